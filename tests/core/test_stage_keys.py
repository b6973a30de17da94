"""Mutation tests of the cache keys: edit a temporary copy of the package, and the key of
every stage that depends on the edit changes, while stages that do not keep theirs.
Keys only: the copy is imported in this process (its modules swapped in for mirflow's,
then swapped back), nothing is run."""

from __future__ import annotations

import ast
import importlib
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mirflow.core import fingerprint

REPO = Path(__file__).resolve().parents[2]

# Every stage function a task hands to run_stage, by pipeline and stage.
STAGES = {
    "gtzan/extract": "mirflow.pipelines.gtzan.extract:write_feature_shard",
    "gtzan/split": "mirflow.stages.splits:write_split",
    "gtzan/scale": "mirflow.stages.classification:write_scaler",
    "gtzan/train": "mirflow.stages.classification:write_trained_model",
    "gtzan/evaluate": "mirflow.stages.classification:write_evaluation",
    "ab/extract": "mirflow.pipelines.acousticbrainz_genre.extract:write_ab_shard",
    "ab/targets": "mirflow.pipelines.acousticbrainz_genre.targets:write_targets",
    "ab/split": "mirflow.pipelines.acousticbrainz_genre.split:write_recording_split",
    "ab/scale": "mirflow.pipelines.acousticbrainz_genre.preprocessing:write_preprocessing",
    "ab/train": "mirflow.pipelines.acousticbrainz_genre.subtask1:write_subtask1_model",
    "ab/stack": "mirflow.pipelines.acousticbrainz_genre.stacking:write_stacked_model",
    "ab/evaluate": "mirflow.pipelines.acousticbrainz_genre.evaluate:write_source_evaluation",
    "msd/extract": "mirflow.pipelines.msd_hotness.extract:write_song_shard",
    "msd/clean": "mirflow.pipelines.msd_hotness.extract:write_clean_shard",
    "msd/design": "mirflow.pipelines.msd_hotness.design:write_design",
    "msd/train": "mirflow.pipelines.msd_hotness.linear:write_fit",
    "msd/evaluate": "mirflow.pipelines.msd_hotness.evaluate:write_evaluation",
    "gtzan/fold-split": "mirflow.stages.splits:write_fold_split",
    "cnn/images": "mirflow.pipelines.cnn_benchmark.images:write_images",
    "cnn/images-logmel": "mirflow.pipelines.cnn_benchmark.logmels:write_logmel_images",
    "cnn/normalise": "mirflow.pipelines.cnn_benchmark.images:write_normalisation",
    "cnn/train": "mirflow.pipelines.cnn_benchmark.benchmark:write_benchmark",
    "kkbox/consolidate": "mirflow.pipelines.kkbox_relisten.relisten:write_consolidated",
    "kkbox/split": "mirflow.pipelines.kkbox_relisten.relisten:write_split",
    "kkbox/transform": "mirflow.pipelines.kkbox_relisten.relisten:write_transform",
    "kkbox/train": "mirflow.pipelines.kkbox_relisten.relisten:write_network",
    "kkbox/train-lightgbm": "mirflow.pipelines.kkbox_relisten.relisten:write_lightgbm",
    "kkbox/evaluate": "mirflow.pipelines.kkbox_relisten.evaluate:write_evaluation",
    "vocal/separate": "mirflow.pipelines.vocal_genre.separation:write_separated_song",
    "vocal/folds": "mirflow.pipelines.vocal_genre.folds:write_song_folds",
    "vocal/train": "mirflow.pipelines.vocal_genre.train:write_fold_model",
}
EXTRACTION = {"vocal/separate", "cnn/images", "cnn/normalise", "gtzan/extract", "ab/extract", "msd/extract", "msd/clean", "msd/design", "kkbox/consolidate", "kkbox/transform"}
TRAINING = {"gtzan/train", "ab/train", "ab/stack", "kkbox/train", "cnn/train", "vocal/train"}
# The stages that build a network: MODELS is one registry, so editing any model re-keys them all.
MODEL_USERS = {"gtzan/train", "gtzan/evaluate", "ab/train", "ab/stack", "kkbox/train", "kkbox/evaluate", "cnn/train",
               "vocal/train"}

# (file, text in it, replacement) -> the stages whose code reaches the edit: their keys must
# change, all others must not (stages downstream of them re-key through their inputs, the
# upstream keys).
MUTATIONS = {
    "module constant (a feature's column name)": (
        "pipelines/gtzan/features.py", '_TEMPO = "tempo"', '_TEMPO = "bpm"', {"gtzan/extract"}),
    "AcousticBrainz SPEC (the LAYOUT built from it)": (
        "datasets/acousticbrainz.py", '**_group("tonal", "stats", 36, "hpcp")', '**_group("tonal", "stats", 12, "hpcp")',
        {"ab/extract", "ab/scale", "ab/train"}),
    "a class reached only through the MODELS registry": (
        "models/cnn.py", "        super().__init__()\n", "        super().__init__()\n        self.edited = True\n",
        MODEL_USERS),
    "a default argument of a model": (
        "models/mlp.py", "dropout: float = 0.2,", "dropout: float = 0.25,",
        MODEL_USERS),
    "a helper two calls deep": (
        "pipelines/gtzan/features.py", "    if y.ndim != 1 or y.size == 0", "    if y.ndim != 1 or y.size < 2",
        {"gtzan/extract"}),
    "a dataclass default": (
        "pipelines/gtzan/features.py", "n_mfcc: int = 20", "n_mfcc: int = 13", {"gtzan/extract"}),
    "a constant table (MSD's song fields)": (
        "datasets/msd.py", '"year": ("musicbrainz", "year"),', '"year": ("musicbrainz", "int"),', {"msd/extract"}),
    "the continent polygons": (
        "pipelines/msd_hotness/geo.py", "(-76.5, 11.0)", "(-76.5, 11.5)", {"msd/clean"}),
    "the REPET-SIM soft mask": (
        "pipelines/vocal_genre/separation.py", "    residual = magnitude - repeating\n",
        "    residual = np.maximum(magnitude - repeating, 0)\n", {"vocal/separate"}),
    "the Demucs backend's accompaniment": (
        "pipelines/vocal_genre/demucs_backend.py", 'if name != "vocals")', 'if name not in ("vocals",))',
        {"vocal/separate"}),
    "a zoo model the benchmark trains in a subprocess": (
        "models/resnet.py", "class CifarResNet20(", "class CifarResNet20(  # edited\n", MODEL_USERS),
    "training code": (
        "stages/training.py", "    model.train()\n", "    model.train(True)\n", MODEL_USERS),
}


def _function(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def stage_keys() -> dict[str, str]:
    """Each stage's key for fixed parameters and inputs: what changes is code or libraries."""
    return {
        stage: fingerprint.stage_key(stage, fingerprint.stage_parts(fingerprint.code_hash(_function(path)), {}, {}))
        for stage, path in STAGES.items()
    }


@contextmanager
def package_copy(root: Path, source: Path = REPO, edit: tuple[str, str, str] | None = None) -> Iterator[None]:
    """Import ``mirflow`` from a copy (of the one under ``source``) under ``root``, with
    ``edit`` applied, instead of this checkout's, for the duration of the block."""
    shutil.copytree(source / "mirflow", root / "mirflow")  # with a pristine copy's bytecode, if any
    if edit:
        file, old, new = edit
        path = root / "mirflow" / file
        text = path.read_text()
        assert text.count(old) == 1, f"{file}: the text to edit occurs {text.count(old)} times"
        path.write_text(text.replace(old, new))
        for stale in path.parent.glob(f"__pycache__/{path.stem}.*.pyc"):
            stale.unlink()
    ours = {name: sys.modules.pop(name) for name in list(sys.modules) if name == "mirflow" or name.startswith("mirflow.")}
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == "mirflow" or n.startswith("mirflow.")]:
            del sys.modules[name]
        sys.modules.update(ours)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An unedited copy (compiled once: the edited copies reuse its bytecode) and its keys."""
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(REPO / "mirflow", root / "source" / "mirflow", ignore=shutil.ignore_patterns("__pycache__"))
    with package_copy(root / "imported", root / "source"):
        keys = stage_keys()
    return root / "imported", keys


@pytest.fixture(scope="module")
def baseline(pristine) -> dict[str, str]:
    return pristine[1]


def test_a_copy_of_the_package_keys_like_the_package(baseline):
    assert baseline == stage_keys()


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_an_edit_rekeys_exactly_the_stages_that_depend_on_it(mutation, pristine, baseline, tmp_path):
    *edit, expected = MUTATIONS[mutation]
    with package_copy(tmp_path, pristine[0], tuple(edit)):
        keys = stage_keys()
    changed = {stage for stage in STAGES if keys[stage] != baseline[stage]}
    assert changed == expected


def test_editing_training_code_does_not_rekey_feature_extraction():
    *_, rekeyed = MUTATIONS["training code"]
    assert rekeyed >= TRAINING and not rekeyed & EXTRACTION


def test_a_library_reported_at_another_version_rekeys_every_stage(baseline, monkeypatch):
    real = fingerprint._installed_version
    monkeypatch.setattr(fingerprint, "_installed_version", lambda name: "0.0-other" if name == "librosa" else real(name))
    fingerprint.library_versions.cache_clear()
    try:
        keys = stage_keys()
    finally:
        fingerprint.library_versions.cache_clear()
    assert all(keys[stage] != baseline[stage] for stage in STAGES)


def test_the_table_lists_every_stage_function_the_tasks_run():
    """The mutation tests cover every stage: each run_stage call in tasks/ hands over a
    function this file's STAGES names."""
    named = {path.split(":")[1] for path in STAGES.values()}
    handed = set()
    for source in (REPO / "tasks").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_stage" and len(node.args) > 2:
                func = node.args[2]
                handed.add(func.attr if isinstance(func, ast.Attribute) else func.id)
    assert handed and handed <= named, handed - named
