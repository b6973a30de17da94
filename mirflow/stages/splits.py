"""Train/validation/test splits and k-fold assignments that never cut a group.

A split is a ``pandas.Series`` named ``"split"``: index = row ids, values in
``SPLITS`` (categorical dtype ``SPLIT_DTYPE``). Every function here and in
``mirflow.stages.scaling`` takes and returns that one representation.

Labels may be single-label (strings or ints), multi-label (a sequence of label lists,
or a 2-D binary indicator: numpy, scipy.sparse or DataFrame) or ``None``. Continuous
targets (MSD hotness) must be binned first, e.g. ``pd.qcut(y, 10, labels=False)``.
Groups (song, artist, release group) are kept whole; ``groups=None`` makes every row
its own group.

Hand-written on purpose: no library does grouped, multi-label stratification into
fractions. scikit-learn's ``StratifiedGroupKFold`` takes binary/multiclass targets only
and makes k equal folds, not train/validation/test fractions; the iterative
stratification packages (``iterstrat``, scikit-multilearn) stratify multi-label rows but
cannot keep a group whole. AcousticBrainz needs all three at once (genre lists,
release groups, 70/15/15), and one algorithm serves every pipeline.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    import scipy.sparse as sp

from mirflow.core.errors import ConfigError
from mirflow.core.sparse import is_sparse
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.stages.featuresets import FeatureSet

SPLITS = ("train", "validation", "test")
SPLIT_DTYPE = pd.CategoricalDtype(SPLITS)
# The three lists of the artist-filtered GTZAN split (Kereliuk, Sturm & Larsen 2015).
SPLIT_LIST_FILES = {"train": "train_filtered.txt", "validation": "valid_filtered.txt", "test": "test_filtered.txt"}
_SPLIT_ALIASES = {"val": "validation", "valid": "validation"}
_AUDIO_SUFFIXES = (".wav", ".au", ".mp3", ".flac", ".ogg")
SPLIT = "split.parquet"  # the split stage's artifact (``write_split``)


def split_train_val_test(
    labels, groups, *, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int
) -> pd.Series:
    """Stratified, group-exclusive train/validation/test split (fractions of rows).

    Groups are assigned whole by iterative stratification (Sechidis et al., ECML 2011,
    applied to groups): the rarest label's groups first, each to the split that most
    lacks that label. Single-label data is the one-hot special case, so a class with
    fewer groups than splits simply lands in fewer splits. Deterministic for a seed.
    """
    fractions = _check_fractions(fractions)
    index, group_codes, label_matrix = _prepare(labels, groups)
    parts = _assign_groups(group_codes, label_matrix, fractions, seed, "split")
    return pd.Series(pd.Categorical.from_codes(parts, dtype=SPLIT_DTYPE), index=index, name="split")


def kfold_assignments(labels, groups, *, k: int, seed: int) -> pd.Series:
    """Stratified group k-fold: fold index (0..k-1) per row, same algorithm as the split."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ConfigError(f"k={k!r}: the number of folds must be an integer >= 2")
    index, group_codes, label_matrix = _prepare(labels, groups)
    folds = _assign_groups(group_codes, label_matrix, np.full(k, 1.0 / k), seed, "fold")
    return pd.Series(folds, index=index, name="fold")


def load_split_file(path: str | Path, ids: Sequence, *, missing_ok: bool = False) -> pd.Series:
    """A predefined split for ``ids``, from a CSV/TSV (columns ``id,split``) or a folder.

    A folder holds ``SPLIT_LIST_FILES`` with one clip per line (``blues/blues.00029.wav``);
    clips match ids by file name without audio extension, so ids ``blues.00029`` and
    ``genres/blues/blues.00029.au`` both match. CSV ids match exactly (as strings).
    Ids absent from the file are left out of the result: a predefined split may exclude
    rows on purpose (the filtered GTZAN split drops 70 faulty clips). Ids in the file
    that are not among ``ids`` raise ConfigError unless ``missing_ok``.
    """
    listed = split_file_names(path)
    key = _clip_key if Path(path).is_dir() else str
    ours = pd.Series(list(ids), dtype=object)
    keys = ours.map(key)
    if keys.duplicated().any():
        raise ConfigError(f"split file {path}: ids map to the same entry, e.g. {keys[keys.duplicated()].iloc[0]!r}")
    unknown = listed.index.difference(pd.Index(keys))
    if len(unknown) and not missing_ok:
        raise ConfigError(
            f"split file {path}: {len(unknown)} listed ids are not among the {len(ours)} given ids, "
            f"e.g. {list(unknown[:5])}; pass the matching data set or missing_ok=True"
        )
    found = keys.isin(listed.index).to_numpy()
    values = listed.reindex(keys[found].to_numpy()).to_numpy()
    return pd.Series(pd.Categorical(values, dtype=SPLIT_DTYPE), index=pd.Index(ours[found]), name="split")


def listed_split(listed: Mapping[str, str], ids: Sequence) -> pd.Series:
    """A predefined split given as id -> split name, for ``ids``; ids it does not list
    are left out of the result (and so out of every split)."""
    found = [i for i in ids if i in listed]
    names = pd.Series([listed[i] for i in found], index=pd.Index(found, dtype=object), dtype=object)
    return validate_split(names)


def split_file_names(path: str | Path) -> pd.Series:
    """Split name per id listed in a split file (CSV/TSV ``id,split``) or folder of lists."""
    path = Path(path)
    if path.is_dir():
        return _read_split_lists(path)
    if path.is_file():
        return _read_split_table(path)
    raise ConfigError(f"split file {path} does not exist")


def require_rows(counts: dict[str, int], needed: Sequence[str], source: str) -> None:
    """ConfigError naming ``source`` (the parameter that made the split) when a split a
    stage needs is empty: training stops early on validation rows and models are
    chosen on them, never on training rows instead."""
    empty = [name for name in needed if not counts.get(name)]
    if empty:
        raise ConfigError(f"{source} leaves no {' and no '.join(empty)} rows; early stopping and model selection need them")


def audit_group_overlap(split: pd.Series, groups) -> list[str]:
    """Groups found in more than one split, as sorted strings (empty list = clean)."""
    split = validate_split(split)
    group_values = pd.Series(_aligned(groups, split.index, "groups"), index=split.index)
    splits_per_group = pd.Series(split.to_numpy()).groupby(group_values.to_numpy(), observed=True).nunique()
    return sorted(str(g) for g in splits_per_group.index[splits_per_group.to_numpy() > 1])


def validate_split(split: pd.Series) -> pd.Series:
    """``split`` as ``SPLIT_DTYPE``; ConfigError when a value is missing or unknown."""
    if not isinstance(split, pd.Series):
        raise ConfigError(f"split must be a pandas Series (index = row ids), got {type(split).__name__}")
    if split.index.has_duplicates:
        raise ConfigError(f"split index has duplicate row ids, e.g. {split.index[split.index.duplicated()][0]!r}")
    if split.dtype == SPLIT_DTYPE and not split.isna().any():
        return split.rename("split")
    values = split.astype(object).map(lambda v: _SPLIT_ALIASES.get(v, v))
    bad = values[~values.isin(SPLITS)]
    if len(bad):
        raise ConfigError(f"split has {len(bad)} rows not in {SPLITS}, e.g. row {bad.index[0]!r} = {bad.iloc[0]!r}")
    return pd.Series(pd.Categorical(values, dtype=SPLIT_DTYPE), index=split.index, name="split")


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=float)
    fix = "e.g. fractions=(0.7, 0.15, 0.15)"
    if values.shape != (3,):
        raise ConfigError(f"fractions={tuple(fractions)} must be three numbers (train, validation, test); {fix}")
    if not np.all((values >= 0) & (values < 1)):
        raise ConfigError(f"fractions={tuple(fractions)}: each must be in [0, 1); {fix}")
    if values[0] <= 0:
        raise ConfigError(f"fractions={tuple(fractions)}: the train fraction must be > 0; {fix}")
    if abs(values.sum() - 1.0) > 1e-9:
        raise ConfigError(f"fractions={tuple(fractions)} sum to {values.sum():.12g}, not 1; {fix}")
    return values


def _prepare(labels, groups) -> tuple[pd.Index, np.ndarray, sp.csr_matrix]:
    """Row index, group code per row, and rows x labels indicator (CSR)."""
    import scipy.sparse as sp  # here: a cached re-run computes no split (mirflow.core.sparse)
    source = labels if labels is not None else groups
    if source is None:
        raise ConfigError("labels and groups are both None: nothing says how many rows there are")
    n_rows = source.shape[0] if is_sparse(source) else len(source)
    index = next((v.index for v in (labels, groups) if isinstance(v, (pd.Series, pd.DataFrame))), None)
    index = pd.RangeIndex(n_rows) if index is None else index
    if index.has_duplicates:
        raise ConfigError(f"row ids (index of labels/groups) repeat, e.g. {index[index.duplicated()][0]!r}")
    if groups is None:
        group_codes = np.arange(n_rows)
    else:
        group_values = pd.Series(_aligned(groups, index, "groups"))
        if group_values.isna().any():
            n_missing = int(group_values.isna().sum())
            raise ConfigError(f"groups has {n_missing} missing values; give such rows their own group id")
        group_codes = pd.factorize(group_values, sort=True)[0]
    label_matrix = sp.csr_matrix((n_rows, 0)) if labels is None else _label_matrix(labels, index)
    return index, group_codes, label_matrix


def _aligned(values, index: pd.Index, name: str) -> np.ndarray:
    """``values`` in the order of ``index``: by index when pandas, else by position."""
    if isinstance(values, (pd.Series, pd.DataFrame)):
        if not values.index.equals(index):
            if len(values) != len(index) or not values.index.sort_values().equals(index.sort_values()):
                raise ConfigError(f"{name} is indexed by other row ids than the split/labels")
            values = values.reindex(index)
        return values.to_numpy()
    if is_sparse(values) or isinstance(values, np.ndarray):
        array = values
    else:  # a list: keep label lists as objects even when all have equal length
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
    if array.shape[0] != len(index):
        raise ConfigError(f"{name} has {array.shape[0]} rows, expected {len(index)}")
    return array


def _label_matrix(labels, index: pd.Index) -> sp.csr_matrix:
    """Rows x labels 0/1 indicator from single labels, label lists, or an indicator."""
    import scipy.sparse as sp
    values = _aligned(labels, index, "labels")
    if is_sparse(values) or (isinstance(values, np.ndarray) and values.ndim == 2):
        return (sp.csr_matrix(values) != 0).astype(np.float64).tocsr()
    if len(values) and isinstance(values[0], (list, tuple, set, frozenset, np.ndarray)):
        rows = [(i, label) for i, row in enumerate(values) for label in row]
        row_ids, names = zip(*rows) if rows else ((), ())
        codes, uniques = pd.factorize(pd.Series(names, dtype=object), sort=True)
        shape = (len(values), len(uniques))
        return sp.csr_matrix((np.ones(len(codes)), (np.asarray(row_ids, dtype=int), codes)), shape=shape)
    series = pd.Series(values)
    if pd.api.types.is_float_dtype(series) and not np.all(np.mod(series.dropna(), 1) == 0):
        raise ConfigError("labels are continuous; bin them (pd.qcut(y, 10, labels=False)) or pass labels=None")
    codes, uniques = pd.factorize(series, sort=True)
    labelled = codes >= 0  # missing labels stratify as "no label"
    rows = np.flatnonzero(labelled)
    return sp.csr_matrix((np.ones(len(rows)), (rows, codes[labelled])), shape=(len(values), len(uniques)))


def _assign_groups(
    group_codes: np.ndarray, label_matrix: sp.csr_matrix, fractions: np.ndarray, seed: int, unit: str
) -> np.ndarray:
    """Part index per row: whole groups assigned greedily towards ``fractions`` of rows."""
    import scipy.sparse as sp
    n_groups = int(group_codes.max()) + 1 if len(group_codes) else 0
    parts = [int(p) for p in np.flatnonzero(fractions > 0)]
    if n_groups < len(parts):
        raise ConfigError(f"{len(parts)} non-empty {unit}s need at least {len(parts)} groups, got {n_groups}")
    n_rows = len(group_codes)
    to_group = sp.csr_matrix((np.ones(n_rows), (group_codes, np.arange(n_rows))), shape=(n_groups, n_rows))
    counts = (to_group @ label_matrix).tocsr()  # groups x labels: rows of each label in each group
    sizes = np.bincount(group_codes, minlength=n_groups).astype(float)
    rng = np.random.default_rng(seed)
    tie_break = random.Random(int(rng.integers(2**63)))
    # Largest groups first (greedy packing balances better); random order among equals.
    shuffled = rng.permutation(n_groups)
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    rank = np.empty(n_groups, dtype=np.int64)
    rank[order] = np.arange(n_groups)

    want_rows = fractions * sizes.sum()
    want_labels = np.outer(fractions, np.asarray(counts.sum(axis=0)).ravel())
    assigned = np.full(n_groups, -1)

    def place(group: int, score) -> None:
        best = max(parts, key=lambda p: (score(p), want_rows[p], tie_break.random()))
        assigned[group] = best
        start, stop = counts.indptr[group], counts.indptr[group + 1]
        want_labels[best, counts.indices[start:stop]] -= counts.data[start:stop]
        want_rows[best] -= sizes[group]

    by_label = counts.tocsc()
    remaining = np.asarray(counts.sum(axis=0)).ravel()
    while np.any(remaining > 0):
        label = int(np.argmin(np.where(remaining > 0, remaining, np.inf)))  # rarest label next
        holders = by_label.indices[by_label.indptr[label] : by_label.indptr[label + 1]]
        holders = holders[assigned[holders] < 0]
        for group in holders[np.argsort(rank[holders])]:
            place(int(group), lambda p: want_labels[p, label])
        remaining -= np.asarray(counts[holders].sum(axis=0)).ravel()
    for group in order[assigned[order] < 0]:  # groups without any label
        place(int(group), lambda p: 0.0)
    _fill_empty_parts(assigned, parts, sizes, rank)
    return assigned[group_codes]


def _fill_empty_parts(assigned: np.ndarray, parts: list[int], sizes: np.ndarray, rank: np.ndarray) -> None:
    """Give every wanted part a group (tiny data), taking the smallest group of the largest part."""
    for part in parts:
        if np.any(assigned == part):
            continue
        donor = max(parts, key=lambda p: np.count_nonzero(assigned == p))
        members = np.flatnonzero(assigned == donor)
        smallest = members[np.lexsort((rank[members], sizes[members]))[0]]
        assigned[smallest] = part


def _read_split_table(path: Path) -> pd.Series:
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    if not {"id", "split"} <= set(table.columns):
        raise ConfigError(f"split file {path} needs columns 'id' and 'split', found {list(table.columns)}")
    return _listed(table["id"], table["split"], path)


def _read_split_lists(folder: Path) -> pd.Series:
    missing = [name for name in SPLIT_LIST_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"split folder {folder} lacks {missing}; it needs {list(SPLIT_LIST_FILES.values())}")
    ids, names = [], []
    for name, file_name in SPLIT_LIST_FILES.items():
        lines = [line.strip() for line in (folder / file_name).read_text().splitlines() if line.strip()]
        ids += [_clip_key(line) for line in lines]
        names += [name] * len(lines)
    return _listed(pd.Series(ids), pd.Series(names), folder)


def _listed(ids: pd.Series, names: pd.Series, source: Path) -> pd.Series:
    """Split name per listed id; ConfigError on unknown split names or repeated ids."""
    names = names.str.strip().str.lower().map(lambda v: _SPLIT_ALIASES.get(v, v))
    unknown = sorted(set(names) - set(SPLITS))
    if unknown:
        raise ConfigError(f"split file {source}: unknown split names {unknown[:5]}; use {SPLITS}")
    listed = pd.Series(names.to_numpy(), index=pd.Index(ids.str.strip()), name="split")
    if listed.index.has_duplicates:
        raise ConfigError(f"split file {source} lists {listed.index[listed.index.duplicated()][0]!r} more than once")
    return listed


def _clip_key(entry) -> str:
    """``blues/blues.00029.wav`` -> ``blues.00029`` (GTZAN names contain a dot)."""
    name = str(entry).replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in _AUDIO_SUFFIXES else name


# -- the split stage: every pipeline that splits a feature set by group ------------
def write_split(
    writer: ArtifactWriter,
    features: FeatureSet,
    fractions: Sequence[float],
    seed: int,
    split_file: str | None,
    folds: int | None,
    stratify: bool = True,
    listed: Mapping[str, str] | None = None,
) -> dict:
    """Group-exclusive train/validation/test split of the rows, stratified by ``label``
    (a continuous target, ``stratify=False``, is not), or a predefined one (``split_file``,
    or ``listed``: id -> split name), plus k folds of the training rows.

    A predefined split names clips when the rows have a ``clip_id`` (every segment
    follows its clip), rows otherwise; rows it leaves out are left out of every split.
    Training and validation rows are required (``require_rows``).
    """
    id_column = "clip_id" if "clip_id" in features.schema().names else "row_id"
    rows = features.read(list(dict.fromkeys(["row_id", id_column, *(["label"] if stratify else []), "group"])))
    all_ids = rows[id_column].nunique()
    if split_file or listed is not None:
        ids = rows[id_column].drop_duplicates().tolist()
        assigned = load_split_file(split_file, ids) if split_file else listed_split(listed, ids)
        split = rows[id_column].map(assigned)
        rows = rows[split.notna()].assign(split=split[split.notna()].astype(str).to_numpy()).reset_index(drop=True)
    else:
        by_row = rows.set_index("row_id")
        labels = by_row["label"] if stratify else None
        rows["split"] = split_train_val_test(labels, by_row["group"], fractions=tuple(fractions), seed=seed).astype(str).to_numpy()
    source = f"split_file {split_file}" if split_file else f"fractions {tuple(fractions)}"
    require_rows(rows["split"].value_counts().to_dict(), ("train", "validation"), source)
    if folds:
        train = rows[rows["split"] == "train"].set_index("row_id")
        fold_of = kfold_assignments(train["label"] if stratify else None, train["group"], k=folds, seed=seed)
        rows["fold"] = rows["row_id"].map(fold_of).fillna(-1).astype("int32")
    writer.write_parquet(SPLIT, pa.Table.from_pandas(rows, preserve_index=False))
    in_split = {name: rows[rows["split"] == name] for name in SPLITS}
    summary = {"rows": {name: len(part) for name, part in in_split.items()},
               "groups": {name: int(part["group"].nunique()) for name, part in in_split.items()},
               # ids (clips, or rows) a predefined split leaves out of every split
               "excluded": int(all_ids - rows[id_column].nunique())}
    return {**summary, "classes": sorted(rows["label"].unique())} if stratify else summary


def write_fold_split(writer: ArtifactWriter, store: ArtifactStore, split_ref: ArtifactRef, fold: int) -> dict:
    """One round of k-fold cross-validation on the training rows of a split: fold ``fold``
    of the training rows becomes ``test``, the other folds ``train``; validation rows stay
    (early stopping), the real test rows are left out. Folds keep groups whole, so no
    group is on both sides."""
    rows = read_split(store, split_ref)
    if "fold" not in rows.columns:
        raise ConfigError("cross-validation needs a split with folds (folds >= 2)")
    in_train = rows["split"] == "train"
    rows = rows[in_train | (rows["split"] == "validation")].copy()
    rows.loc[in_train & (rows["fold"] == fold), "split"] = "test"
    writer.write_parquet(SPLIT, pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False))
    return {"fold": fold, "rows": {name: int((rows["split"] == name).sum()) for name in SPLITS}}


def read_split(store: ArtifactStore, ref: ArtifactRef) -> pd.DataFrame:
    return store.read_parquet(ref, SPLIT).to_pandas()
