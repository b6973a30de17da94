"""Cache keys cover code (transitively), parameters and data content."""

import importlib
import sys
import textwrap

from mirflow.core.fingerprint import code_hash, file_fingerprint, stable_hash


def _write_package(root, helper_body):
    pkg = root / "mirflow_fp_demo"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text(textwrap.dedent(helper_body))
    (pkg / "stage.py").write_text(
        "from mirflow_fp_demo import helpers\n\n\ndef run_stage(x):\n    return helpers.transform(x) + 1\n"
    )


def _hash_stage(root):
    for name in [m for m in sys.modules if m.startswith("mirflow_fp_demo")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    stage = importlib.import_module("mirflow_fp_demo.stage")
    return code_hash(stage.run_stage, packages=("mirflow_fp_demo",))


def test_editing_a_called_function_changes_the_key(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_package(tmp_path, "def transform(x):\n    return x * 2\n")
    before = _hash_stage(tmp_path)
    assert _hash_stage(tmp_path) == before  # stable
    _write_package(tmp_path, "def transform(x):\n    return x * 3\n")
    assert _hash_stage(tmp_path) != before


def test_a_module_imported_in_the_function_body_is_covered_without_being_imported(tmp_path, monkeypatch):
    """Heavy project modules (torch models) are imported where used, so that importing a
    flow stays fast: the key must still change when they, or what they import, change."""
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_package(tmp_path, "from mirflow_fp_demo import deep\n\n\ndef transform(x):\n    return deep.scale * x\n")
    (tmp_path / "mirflow_fp_demo" / "stage.py").write_text(
        "def run_stage(x):\n    from mirflow_fp_demo.helpers import transform\n\n    return transform(x) + 1\n"
    )
    deep = tmp_path / "mirflow_fp_demo" / "deep.py"
    deep.write_text("scale = 2\n")
    before = _hash_stage(tmp_path)
    assert "mirflow_fp_demo.helpers" not in sys.modules and "mirflow_fp_demo.deep" not in sys.modules
    assert _hash_stage(tmp_path) == before
    deep.write_text("scale = 3\n")
    assert _hash_stage(tmp_path) != before


def test_stage_code_hash_follows_mirflow_modules():
    from mirflow.pipelines.gtzan import extract as extraction, features

    first = code_hash(extraction.write_feature_shard)
    original = features.extract_clip
    try:
        exec(compile("def extract_clip(y, settings):\n    return {}, None\n", "<edited>", "exec"), features.__dict__)
        extraction_globals = extraction.__dict__
        extraction_globals["extract_clip"] = features.extract_clip
        assert code_hash(extraction.write_feature_shard) != first
    finally:
        features.extract_clip = original
        extraction.extract_clip = original
    assert code_hash(extraction.write_feature_shard) == first


def test_stable_hash_and_file_fingerprints(tmp_path):
    assert stable_hash({"b": 1, "a": [1.0, float("nan")]}) == stable_hash({"a": [1.0, float("nan")], "b": 1})
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"abc")
    rel, stat = file_fingerprint(audio, tmp_path)
    assert rel == "a.wav" and stat.startswith("stat:3:")
    _, content = file_fingerprint(audio, tmp_path, "content")
    copy = tmp_path / "b.wav"
    copy.write_bytes(b"abc")
    assert file_fingerprint(copy, tmp_path, "content")[1] == content


def test_keys_follow_a_shared_stage_helper_into_mirflow_stages(monkeypatch):
    """MSD's train stage reaches ``mirflow.stages.scaling.apply_scaler`` through its design
    loader: the package list covers the whole mirflow package, so editing that helper
    changes the stage's key."""
    from mirflow.core import fingerprint
    from mirflow.pipelines.msd_hotness import linear
    from mirflow.stages import scaling

    sources: dict[str, str] = {}
    fingerprint._collect(linear.write_fit, fingerprint.PROJECT_PACKAGES, sources)
    assert "mirflow.stages.scaling.apply_scaler" in sources
    before = code_hash(linear.write_fit)

    def apply_scaler(scaler, X):  # an edited helper: same module, other source
        return X

    apply_scaler.__module__, apply_scaler.__qualname__ = "mirflow.stages.scaling", "apply_scaler"
    monkeypatch.setattr(scaling, "apply_scaler", apply_scaler)
    assert code_hash(linear.write_fit) != before


def test_hashing_imports_no_package_a_function_imports_in_its_body(tmp_path, monkeypatch):
    """Finding a body-imported module's file must not import its package: mirflow.models
    loads torch, which `--explain` never needs."""
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_package(tmp_path, "def transform(x):\n    return x\n")
    heavy = tmp_path / "mirflow_fp_demo" / "heavy"
    heavy.mkdir()
    (heavy / "__init__.py").write_text("raise RuntimeError('imported the heavy package')\n")
    (heavy / "layers.py").write_text("width = 2\n")
    (tmp_path / "mirflow_fp_demo" / "stage.py").write_text(
        "def run_stage(x):\n    from mirflow_fp_demo.heavy.layers import width\n\n    return width * x\n"
    )
    before = _hash_stage(tmp_path)
    assert "mirflow_fp_demo.heavy" not in sys.modules
    (heavy / "layers.py").write_text("width = 3\n")
    assert _hash_stage(tmp_path) != before


def test_a_class_a_decorator_put_in_a_registry_is_covered(tmp_path, monkeypatch):
    """A registry filled by a decorator names its classes nowhere near the dict: they are
    followed by value."""
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = (
        "MODELS = {}\n\n\ndef register(cls):\n    MODELS[cls.__name__] = cls\n    return cls\n\n\n"
        "@register\nclass Net:\n    width = {width}\n\n\n"
        "def transform(x):\n    return MODELS['Net'].width * x\n"
    )
    _write_package(tmp_path, registry.replace("{width}", "2"))
    before = _hash_stage(tmp_path)
    _write_package(tmp_path, registry.replace("{width}", "3"))
    assert _hash_stage(tmp_path) != before


def test_a_key_parses_each_module_text_once(monkeypatch):
    """Parsing was most of a fresh process's key computation: a module's text is parsed
    once for its definitions, its top-level bindings and its imports, and a function's
    source is read from its node in that parse, not parsed again."""
    import ast
    from collections import Counter

    from mirflow.core import fingerprint
    from mirflow.stages.classification import write_trained_model

    for value in list(vars(fingerprint).values()):  # a fresh process's caches
        if hasattr(value, "cache_clear"):
            value.cache_clear()
    getattr(fingerprint, "_DEFINITION_TREES", {}).clear()
    parsed = Counter()
    real_parse = ast.parse
    monkeypatch.setattr(ast, "parse", lambda source, *args, **kwargs: parsed.update([source]) or real_parse(source, *args, **kwargs))
    code_hash(write_trained_model)
    assert parsed and max(parsed.values()) == 1, [text[:80] for text, n in parsed.items() if n > 1][:3]
    functions = [text for text in parsed if text.lstrip().startswith(("def ", "class ", "@"))]
    assert not functions, functions[:3]
