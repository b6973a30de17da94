"""Benchmarks (not tests): each compares mirflow with a baseline in the same run and
writes JSON + Markdown figures to ``bench/results/``. Run ``python -m bench.run_all``."""
