"""The one demo-data fallback every flow uses when given no data folder."""

from __future__ import annotations

from mirflow.datasets import msd
from mirflow.datasets.base import DEMO_MARKER, demo_folder, ensure_demo


def test_demo_set_is_made_once_and_remade_when_incomplete(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRFLOW_DATA", str(tmp_path))
    folder = demo_folder("msd", 30, seed=1)
    assert folder == tmp_path / "msd-demo-seed1-n30"
    made = []

    def make(target):
        made.append(target)
        msd.synthesize(target, 30, seed=1)

    assert ensure_demo(folder, make) == folder and (folder / DEMO_MARKER).is_file()
    files = msd.list_files(folder)
    stamp = files[0].stat().st_mtime_ns
    assert ensure_demo(folder, make) == folder and len(made) == 1 and files[0].stat().st_mtime_ns == stamp
    (folder / DEMO_MARKER).unlink()  # as if killed before the marker was written
    ensure_demo(folder, make)
    assert len(made) == 2 and files[0].stat().st_mtime_ns != stamp and len(msd.list_files(folder)) == 30


def test_the_demo_fallback_marks_the_run_as_made_on_generated_data(tmp_path, monkeypatch):
    """Every flow's report then opens with the generated-data warning (tasks.run.finish_run)."""
    from types import SimpleNamespace

    from tasks.runtime import data_dir_or_demo

    monkeypatch.setenv("MIRFLOW_DATA", str(tmp_path))
    demo = SimpleNamespace(params=SimpleNamespace(data_dir=None, seed=1), generated_data=False)
    data_dir_or_demo(demo, "msd", 30, lambda folder: msd.synthesize(folder, 30, seed=1))
    real = SimpleNamespace(params=SimpleNamespace(data_dir=str(tmp_path), seed=1), generated_data=False)
    assert data_dir_or_demo(real, "msd", 30, lambda folder: None) == str(tmp_path)
    assert demo.generated_data and not real.generated_data


def test_a_demo_set_made_with_other_generator_settings_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRFLOW_DATA", str(tmp_path))
    older = demo_folder("gtzan", 30, seed=1)
    harder = demo_folder("gtzan", 30, seed=1, variant="3.5s-22050hz-crossover0.2")
    assert harder == tmp_path / "gtzan-demo-seed1-n30-3.5s-22050hz-crossover0.2" and harder != older
