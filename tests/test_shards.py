"""Content-defined shards: inserting a file changes only the shard it lands in."""

import pandas as pd

from mirflow.extraction import plan_shards


def _clips(names):
    return pd.DataFrame({"rel_path": names, "clip_id": names, "label": "x", "group": names, "fingerprint": "f"})


def _membership(shards):
    return {tuple(c["rel_path"] for c in s.clips) for s in shards}


def test_insert_changes_only_one_shard():
    names = [f"genres/rock/rock.{i:05d}.wav" for i in range(0, 400, 2)]
    before = _membership(plan_shards(_clips(names), 16))
    after = _membership(plan_shards(_clips(sorted(names + ["genres/rock/rock.00101.wav"])), 16))
    assert len(before - after) == 1  # the shard the new file joined (it may split in two)
    assert 1 <= len(after - before) <= 2
    assert sum(len(s) for s in after) == len(names) + 1


def test_shards_mix_labels_and_cover_every_clip():
    names = [f"genres/{g}/{g}.{i:05d}.wav" for g in ("blues", "jazz", "rock") for i in range(40)]
    clips = _clips(names).assign(label=[n.split("/")[1] for n in names])
    shards = plan_shards(clips, 20)
    assert sorted(c["rel_path"] for s in shards for c in s.clips) == sorted(names)
    assert all(len({c["label"] for c in s.clips}) > 1 for s in shards if len(s.clips) >= 10)
