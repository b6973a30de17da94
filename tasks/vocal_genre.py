"""Tasks of the vocal_genre flow (reports 004 and 001): list the songs (or generate the
demo set), separate each song on Dask (one cached artifact per song and separator), the
song-level folds and their audit, one training per variant and round on Dask, the outputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mirflow import runs
from mirflow.core.errors import ConfigError, MirflowError
from mirflow.core.fingerprint import file_fingerprint
from mirflow.core.store import ArtifactRef
from mirflow.datasets import gtzan
from mirflow.pipelines.vocal_genre import demo, demucs_backend, evaluate, folds, separation, train
from mirflow.pipelines.vocal_genre.variants import Variant, augment_settings
from tasks.common import STAGE_DEFAULTS, UNCACHED, task
from tasks.runtime import RunContext, data_dir_or_demo, run_logger, run_stage
from tasks.split import fold_label


@task(**STAGE_DEFAULTS)
def discover_songs(ctx: RunContext) -> list[dict]:
    """Songs of a ``<genre>/<song>.<ext>`` folder (GTZAN's layout: full clips as songs) with a content fingerprint."""
    p = ctx.params
    data_dir = data_dir_or_demo(
        ctx, "vocal_genre", p.demo_songs_per_genre,
        lambda folder: demo.synthesize(folder, p.demo_songs_per_genre, p.seed, seconds=p.demo_seconds),
        variant=f"{p.demo_seconds}s")
    ctx.generated_data = ctx.generated_data or gtzan.is_synthetic(data_dir)
    songs = gtzan.discover(data_dir).rename(columns={"genre": "label"})
    songs["rel_path"], songs["fingerprint"] = zip(*(file_fingerprint(path, data_dir, p.fingerprint) for path in songs["path"]))
    run_logger().info("found %d songs in %d genres", len(songs), songs["label"].nunique())
    return songs.to_dict("records")


def slice_settings(ctx: RunContext) -> separation.SliceSettings:
    return separation.SliceSettings(n_mels=ctx.params.n_mels, slice_frames=ctx.params.slice_frames)


@task(**STAGE_DEFAULTS, task_run_name="separate-{index}")
def separate_song(ctx: RunContext, song: dict, separator: str | None, index: int) -> ArtifactRef:
    """One song's stems of ``separator`` as slices, on Dask; keyed by the song's content, so
    adding songs separates only the new ones."""
    settings = slice_settings(ctx)
    weights = ctx.params.demucs_weights if separator == "demucs" else None
    resynthesize = ctx.params.resynthesize and separator != "demucs"  # Demucs's waveforms are always re-analysed
    params = {"separator": separator, "settings": dataclasses.asdict(settings), "resynthesize": resynthesize}
    if weights:  # the checkpoint's content and the package running it, not the path
        params["demucs"] = {"weights": demucs_backend.checkpoint_fingerprint(weights),
                            "demucs_infer": demucs_backend.package_version()}
    return run_stage(ctx, "separate", separation.write_separated_song, params, (song["rel_path"], song["fingerprint"]),
                     (song["path"], separator, settings, resynthesize, weights), on_dask=True,
                     label=f"separate[{song['clip_id']}, {separator or 'mix'}]", size=1)


@task(**STAGE_DEFAULTS)
def song_folds(ctx: RunContext, songs: list[dict], separated: list[ArtifactRef]) -> ArtifactRef:
    p = ctx.params
    members = [(s["clip_id"], s["label"], s["group"], ref) for s, ref in zip(songs, separated)]
    params = {"folds": p.folds, "validation_fraction": p.validation_fraction, "seed": p.seed}
    return run_stage(ctx, "folds", folds.write_song_folds, params, [r.key for r in separated],
                     (ctx.store, members, p.folds, p.validation_fraction, p.seed))


@task(**UNCACHED)
def quarantined(ctx: RunContext, fold_set: ArtifactRef, n_songs: int) -> list[dict]:
    """Songs whose audio could not be read; the run fails past ``max_failure_fraction``."""
    if ctx.explain:
        return []
    failures = ctx.store.read_json(fold_set, "summary.json")["failures"]
    for failure in failures:
        run_logger().warning("quarantined %s: %s", failure["path"], failure["reason"])
    if failures and len(failures) / n_songs > ctx.params.max_failure_fraction:
        raise MirflowError(f"{len(failures)} of {n_songs} songs are unreadable (> max_failure_fraction "
                           f"{ctx.params.max_failure_fraction:.1%}); first: {failures[0]['path']}: {failures[0]['reason']}")
    return failures


@task(**UNCACHED)
def audit_song_folds(ctx: RunContext, fold_set: ArtifactRef) -> dict:
    """Never cached: re-reads the saved folds on every run."""
    return {} if ctx.explain else folds.audit_folds(ctx.store, fold_set)


def pretrained_file(ctx: RunContext, model: str) -> str | None:
    """``--pretrained``: a weights file as given, or ``models/<model>.pt`` of a finished run (folder or id)."""
    given = ctx.params.pretrained
    if given is None or Path(given).is_file():
        return given
    run = runs.resolve_run(given, ctx.params.store)
    if not run.store.run_has(run.run_id, f"models/{model}.pt"):
        raise ConfigError(f"pretrained run {run.run_id} has no models/{model}.pt; train {model} there or give a state dict file")
    if not run.store.local:
        raise ConfigError(f"pretrained run {run.run_id} is in a remote store; copy models/{model}.pt and give its path")
    return f"{run.store.run_location(run.run_id)}/models/{model}.pt"


@task(**STAGE_DEFAULTS, task_run_name="train-{variant.model}-fold-{fold}")
def train_variant(ctx: RunContext, separated: dict[str, ArtifactRef], fold_set: ArtifactRef, variant: Variant,
                  fold: int, n_classes: int) -> ArtifactRef:
    p = ctx.params
    spec = train.model_spec(variant.model, n_classes, p.n_mels)
    config = {**p.model_dump(include={"lr", "weight_decay", "batch_size", "max_epochs", "scheduler", "restart_epochs"}),
              "seed": p.seed}
    augment = augment_settings(p, variant.augment)
    weights = pretrained_file(ctx, variant.model) if variant.unfreeze is not None else None
    params = {"spec": spec, "config": config, "augment": augment, "stem": variant.stem, "fold": fold,
              "unfreeze": variant.unfreeze, "pretrained": weights and file_fingerprint(weights, "/", "content")[1]}
    inputs = {"songs": sorted(r.key for r in separated.values()), "folds": fold_set.key}
    return run_stage(ctx, "train", train.write_fold_model, params, inputs,
                     (ctx.store, separated, fold_set, fold, variant.stem, spec, config, augment, weights, variant.unfreeze),
                     on_dask=True, label=fold_label("train", fold, variant.name(p)))


@task(**UNCACHED)
def collect_vocal_genre(ctx: RunContext, trained: dict[Variant, list[ArtifactRef]], failures: list[dict],
                        inputs: dict) -> runs.RunOutputs:
    if ctx.explain:
        return runs.RunOutputs({})
    return evaluate.collect(ctx.store, ctx.params, trained, failures, inputs)

