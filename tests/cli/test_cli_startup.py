"""What the command line does before any work: options by full name only, inputs checked
before Prefect or Dask start, and no heavy library imported where none is needed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mirflow.cli import build_parser

HEAVY = ("prefect", "torch", "sklearn", "matplotlib", "librosa", "dask", "distributed")
LIGHT_HEAVY = (*HEAVY, "pandas", "pyarrow", "h5py", "soundfile")  # what the four light commands never import
ROOT = Path(__file__).resolve().parents[2]  # the repo root: from tests/, `flows` would be the test folder


def _python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (the import state of a new command) and read the JSON it prints last."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.splitlines()[-1]), "stderr": done.stderr}


@pytest.mark.parametrize("argv", [["run", "gtzan", "--shard", "3"], ["runs", "list", "--st", "x"],
                                  ["data", "synth", "gtzan", "--ou", "x"]])
def test_options_are_not_matched_by_prefix(argv, capsys):
    """`--shard 3` was read as `--shard-size 3` (and `--split filtered` as `--split-file`): every parser level must refuse it."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert argv[-2] in capsys.readouterr().err


def test_bad_inputs_fail_in_one_line_before_prefect_is_imported(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "blues.00000.wav").write_bytes(b"")  # not inside a genre folder
    cases = {
        "missing": ["--data-dir", str(tmp_path / "nowhere")],
        "empty": ["--data-dir", str(tmp_path / "empty")],
        "no genre folders": ["--data-dir", str(tmp_path / "flat")],
        "no validation rows": ["--fractions", "1", "0", "0"],
        "fractions sum": ["--fractions", "0.5", "0.5", "0.5"],
    }
    result = _python(f"""
        import json, sys
        from mirflow.cli import main
        codes = {{name: main(["run", "gtzan", *argv, "--store", {str(tmp_path / "store")!r}]) for name, argv in {cases!r}.items()}}
        print(json.dumps({{"codes": codes, "imported": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
    """)
    assert result["codes"] == dict.fromkeys(cases, 2)
    assert result["imported"] == []
    lines = result["stderr"].splitlines()
    assert len(lines) == len(cases) and all(line.startswith("mirflow: error: ") for line in lines)
    missing, empty, flat, no_evaluation, fractions = lines
    assert "data_dir" in missing and "nowhere" in missing and "no such folder" in missing
    assert "no audio files" in empty
    assert "must sit directly inside a genre folder" in flat
    assert "fractions" in no_evaluation and "leave no validation rows" in no_evaluation
    assert no_evaluation.startswith("mirflow: error: fractions") and fractions.startswith("mirflow: error: --fractions:")


def test_light_commands_and_flow_imports_load_no_heavy_library(tmp_path):
    """`--help`, `runs list`, `store du` and `data list` answer within 1 s: none may import
    pandas (0.7 s), pyarrow, h5py or soundfile, let alone Prefect or torch."""
    result = _python(f"""
        import json, os, sys
        os.environ["MIRFLOW_DATA"] = {str(tmp_path / "data")!r}
        from mirflow.cli import build_parser, main
        try:
            main(["--help"])
        except SystemExit:
            pass
        light = {{"help": sorted(m for m in {LIGHT_HEAVY!r} if m in sys.modules)}}
        for argv in (["runs", "list"], ["store", "du"], ["data", "list"]):
            main([*argv, *(["--store", {str(tmp_path)!r}] if argv[0] != "data" else [])])
            light[argv[0]] = sorted(m for m in {LIGHT_HEAVY!r} if m in sys.modules)
        import flows.gtzan
        flows.gtzan.gtzan.serialize_parameters({{"params": flows.gtzan.GtzanParams(), "explain": False}})  # as a run starts
        flow = sorted(m for m in ("torch", "sklearn", "scipy", "matplotlib", "fastapi") if m in sys.modules)
        print(json.dumps({{"light": light, "flow": flow}}))
    """)
    assert result["light"] == {"help": [], "runs": [], "store": [], "data": []}
    # the flow needs Prefect, but training, models and metrics only where a stage computes, and
    # recording its parameters no FastAPI (Prefect's default serialiser imports it: 0.4 s)
    assert result["flow"] == []


def test_no_collection_while_a_command_imports_and_what_it_made_is_frozen():
    """The collector's passes over what imports make (long-lived, no garbage) were ~0.5 s of
    an unchanged re-run's start: none inside ``collector_paused``; afterwards those objects
    are frozen (later collections skip them) and collection is back on."""
    import gc

    from mirflow.cli import collector_paused

    started: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(record)
    try:
        frozen_before = gc.get_freeze_count()
        with collector_paused(freeze=False):  # main(argv) in a caller's process: nothing frozen
            made = [[i] for i in range(100_000)]  # outside, ~140 young collections
            collected_inside = len(started)
        assert collected_inside == 0 and gc.isenabled()
        assert gc.get_freeze_count() == frozen_before
        collected_before = len(started)
        with collector_paused(freeze=True):  # the command's own process
            made += [[i] for i in range(100_000)]
            collected_inside = len(started) - collected_before
        assert collected_inside == 0 and gc.isenabled()
        assert gc.get_freeze_count() >= frozen_before + len(made)
    finally:
        gc.callbacks.remove(record)
        gc.unfreeze()
