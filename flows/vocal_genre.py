"""Genre from separated stems (report 004) and transfer learning (report 001).

discover songs → separate each song (Dask, one cached artifact per song and separator)
→ song-level stratified k-fold over the slices → leakage audit → per variant and round,
on Dask: train (SpecAugment, mixup, cosine, best-validation checkpoint) and predict the
round's test songs → out-of-fold metrics per slice and per song, ensembles, ablation and
transfer tables → report
"""

from __future__ import annotations

from flows.common import pipeline_flow
from mirflow.pipelines.vocal_genre.params import VocalGenreParams
from mirflow.pipelines.vocal_genre.separation import separator_of
from mirflow.pipelines.vocal_genre.variants import plan_variants
from mirflow.runs import Selection
from tasks.run import finish_run, start_run
from tasks.shards import run_shard_tasks
from tasks.vocal_genre import (
    audit_song_folds, collect_vocal_genre, discover_songs, quarantined, separate_song, song_folds, train_variant,
)


@pipeline_flow("vocal_genre")
def vocal_genre(params: VocalGenreParams = VocalGenreParams(), explain: bool = False) -> dict:
    """Separate, slice, fold by song, train and ensemble; `explain` only reports what would re-run."""
    params.check_inputs()
    ctx = start_run("vocal_genre", params, explain)
    try:
        songs = discover_songs(ctx)
        variants = plan_variants(params)
        demucs = params.demucs_weights is not None
        separators = list(dict.fromkeys(separator_of(v.stem, demucs) for v in variants))
        ctx.progress.expect("separate", len(songs) * len(separators))
        calls = [(song, sep, i) for sep in separators for i, song in enumerate(songs)]
        refs = iter(run_shard_tasks(ctx, separate_song, calls))  # stored songs settled in one task run
        separated = {sep: {song["clip_id"]: next(refs) for song in songs} for sep in separators}
        fold_set = song_folds(ctx, songs, list(separated[separators[0]].values()))
        failures = quarantined(ctx, fold_set, len(songs))
        audit_song_folds(ctx, fold_set)
        classes = len({song["label"] for song in songs})
        futures = {v: [train_variant.submit(ctx, separated[separator_of(v.stem, demucs)], fold_set, v, k, classes)
                       for k in range(params.folds)] for v in variants}
        trained = {v: [f.result() for f in fs] for v, fs in futures.items()}
        inputs = {"songs": len(songs), "stem": params.stem, "resynthesize": params.resynthesize, "folds": params.folds,
                  "variants": [v.name(params) for v in variants]}
        outputs = collect_vocal_genre(ctx, trained, failures, inputs)
        return finish_run(ctx, outputs, Selection(split="validation", metric="song_accuracy"))
    finally:
        ctx.close()
