"""The Demucs separator (the ``demucs-infer`` package), from a local checkpoint only.

Nothing is downloaded: ``--demucs-weights`` names a checkpoint file (a ``.th`` package as
Demucs saves it: class, arguments and state) or a folder holding one model or one bag
(``htdemucs.yaml`` and the ``.th`` files it names, as Demucs's own ``--repo`` takes).
The model must separate Demucs's four sources; ``accompaniment`` is the sum of all but
``vocals`` (Demucs's ``--two-stems vocals``). Checkpoints are pickles: load only your own.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import pickle
from pathlib import Path

import librosa
import numpy as np

from mirflow.core.errors import ConfigError
from mirflow.io.audio import load_audio

SOURCES = ("vocals", "drums", "bass", "other")
STEMS = ("vocals", "accompaniment", "drums", "bass", "other")
INSTALL = "pip install demucs-infer (mirflow's test extra has it)"
WHERE = ("a Demucs checkpoint: a .th file, or a folder with one .th model or one bag (e.g. htdemucs.yaml and the "
         ".th it names, from the demucs release); nothing is downloaded at run time")


def package_version() -> str:
    """The installed ``demucs-infer`` version, or a ConfigError saying what to install."""
    try:
        return importlib.metadata.version("demucs-infer")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"the demucs separator needs the demucs-infer package: {INSTALL}") from None


def checkpoint_files(weights: str) -> list[Path]:
    """The files making up the checkpoint ``weights`` (checked: it exists and names one model or bag)."""
    path = Path(weights)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"demucs_weights {weights}: no such file or folder; put {WHERE}")
    files = sorted(p for p in path.iterdir() if p.suffix in (".th", ".yaml"))
    choices = [p for p in files if p.suffix == ".yaml"] or files
    if len(choices) != 1:
        found = ", ".join(p.name for p in choices) or "no .th or .yaml file"
        raise ConfigError(f"demucs_weights {weights}: a folder must hold one model or one bag, found {found}; put {WHERE}")
    return files


@functools.lru_cache(maxsize=8)
def _content_hash(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in files:
        digest.update(Path(name).name.encode())
        with open(name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def checkpoint_fingerprint(weights: str) -> str:
    """The checkpoint's content hash (read once per process while its files are unchanged)."""
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in checkpoint_files(weights))
    return _content_hash(stats)


@functools.lru_cache(maxsize=1)
def _model(weights: str, fingerprint: str):
    """The model of ``weights`` in eval mode (``fingerprint``: reloaded when the files change)."""
    package_version()
    from demucs_infer.pretrained import get_model
    from demucs_infer.repo import ModelLoadingError
    from demucs_infer.states import load_model

    path = Path(weights)
    try:
        if path.is_file():
            model = load_model(str(path))
        else:
            # A folder: Demucs's local repository (a bag by its yaml name, a model by its
            # signature, the file name before "-checksum").
            files = checkpoint_files(weights)
            bag = next((p.stem for p in files if p.suffix == ".yaml"), None)
            model = get_model(bag or files[0].stem.split("-")[0], repo=path)
    except (ModelLoadingError, pickle.UnpicklingError, EOFError, RuntimeError, KeyError, ValueError, OSError) as error:
        raise ConfigError(f"demucs_weights {weights}: not a loadable Demucs checkpoint ({error}); put {WHERE}") from None
    missing = set(SOURCES) - set(model.sources)
    if missing:
        raise ConfigError(f"demucs_weights {weights}: the model separates {list(model.sources)}, "
                          f"not {sorted(missing)}; use a four-source model (htdemucs, htdemucs_ft, hdemucs_mmi, ...)")
    return model.eval()


def load_model(weights: str):
    """The checkpoint's model, loaded once per process while its files are unchanged."""
    return _model(weights, checkpoint_fingerprint(weights))


def separate_file(path: str, weights: str, sr: int) -> dict[str, np.ndarray]:
    """``STEMS`` of the song at ``path`` as mono float32 waveforms at ``sr`` Hz."""
    import torch
    from demucs_infer.apply import apply_model

    model = load_model(weights)
    y = load_audio(path, model.samplerate)  # mono; a stereo model gets it on every channel
    mix = torch.from_numpy(y)[None].expand(model.audio_channels, -1)
    # Demucs's own normalisation (demucs_infer.api.Separator.separate_tensor); shifts=0: no
    # random time shift, so a song's stems, and the cached artefact, are reproducible.
    mean, std = mix.mean(), mix.mean(0).std() + 1e-8
    sources = apply_model(model, ((mix - mean) / std)[None], shifts=0, split=True, overlap=0.25)[0] * std + mean
    mono = {name: source.mean(0).numpy() for name, source in zip(model.sources, sources)}
    stems = {name: mono[name] for name in SOURCES}
    stems["accompaniment"] = sum(wave for name, wave in mono.items() if name != "vocals")
    return {name: librosa.resample(wave, orig_sr=model.samplerate, target_sr=sr, res_type="soxr_hq").astype(np.float32)
            for name, wave in stems.items()}


def write_random_checkpoint(path: str | Path, seed: int = 0, sources: tuple[str, ...] = ("drums", "bass", "other", "vocals"),
                            **config) -> Path:
    """A randomly initialised HT-Demucs saved as Demucs saves its models, for tests and the
    benchmark (no weights are reachable here); ``config``: HTDemucs's arguments (its
    defaults are htdemucs's architecture)."""
    import torch
    from demucs_infer.htdemucs import HTDemucs

    torch.manual_seed(seed)
    model = HTDemucs(sources=list(sources), **config)
    args, kwargs = model._init_args_kwargs  # what demucs_infer.states.load_model rebuilds it from
    torch.save({"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": model.state_dict()}, path)
    return Path(path)
