"""MSD song hotness's design stage: one variant's sparse design matrix over all split
rows (one-hot/bag-of-words or hashed), everything it learns fitted on the training rows,
and the design artifact's leakage audit.

The encodings are scikit-learn's: ``OneHotEncoder(handle_unknown="ignore")`` for the
categorical columns, ``CountVectorizer(min_df=…)`` for title words and for the
vocabulary of artist terms, ``DictVectorizer`` for the terms' weights (a term's value is
its weight, which a count vectorizer cannot carry) and a signed ``FeatureHasher`` for the
hashed variant. What is learned is kept in ``Design`` as plain lists (``design.json``).

A design artifact holds the unscaled matrix (``matrix.npz``: a dense-valued numeric block
first, then sparse columns), its rows (``rows.parquet``: row_id, group, split, y), the
column names and two train-only scalers: min-max for the numeric block, and max-|x|
for the sparse block (min-max to [0, 1] for nonnegative sparse columns, without losing
sparsity). Models see the scaled matrix; the leakage audit refits the scalers on the
unscaled one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from sklearn.feature_extraction import DictVectorizer, FeatureHasher
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import OneHotEncoder

from mirflow.core.errors import ConfigError, LeakageError
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.stages import leakage, scaling
from mirflow.stages.featuresets import FeatureSet
from mirflow.stages.splits import read_split

CATEGORICAL = ("continent", "key", "mode", "time_signature", "genre")
_NOT_FEATURES = {"label", "song_hotttnesss", *CATEGORICAL}  # the target, and what is one-hot encoded
VARIANTS = ("onehot", "hashed")
MATRIX, ROWS, COLUMNS, SCALERS = "matrix.npz", "rows.parquet", "columns.json", "scalers.json"


# -- what a variant learns from the training rows ----------------------------------------
@dataclass(frozen=True)
class Design:
    """What a design matrix is built from, all fitted on training rows (``design.json``)."""

    variant: str  # "onehot": bags of title words and artist terms; "hashed": (artist, title, terms) hashed
    numeric: tuple[str, ...]  # dense columns, min-max scaled
    categories: dict[str, list[str]]  # one-hot encoded column -> its training levels
    title_words: tuple[str, ...]  # onehot variant: words in >= min_df training titles
    terms: tuple[str, ...]  # onehot variant: artist terms of >= min_df training songs
    hash_buckets: int  # 0 for the one-hot variant
    constant: tuple[str, ...]  # columns dropped for being constant in the training rows

    @property
    def vocabulary(self) -> list[str]:
        """Names of the one-hot and bag columns, in matrix order: "key=5", "title:love", "term:hip hop"."""
        levels = [f"{column}={level}" for column, names in self.categories.items() for level in names]
        return [*levels, *(f"title:{w}" for w in self.title_words), *(f"term:{t}" for t in self.terms)]


def _title_bag(**options):
    """Words of a title as the report split them: lower-cased runs of \\w characters."""
    return CountVectorizer(token_pattern=r"\w+", **options)


def _terms_bag(**options):
    """An artist's terms, each one token (the list is the document, analysed as is)."""
    return CountVectorizer(analyzer=list, **options)


def _frequent(vectorizer, documents: pd.Series) -> tuple[str, ...]:
    """The vectorizer's vocabulary of these documents (its ``min_df`` applied), sorted."""
    try:
        return tuple(str(token) for token in vectorizer.fit(documents).get_feature_names_out())
    except ValueError:  # sklearn refuses to learn an empty vocabulary: this bag gets no columns
        return ()


def fit_design(train: pd.DataFrame, variant: str, hash_buckets: int, min_df: int) -> Design:
    """Columns, category levels and vocabularies of the training rows."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant={variant!r}: must be one of {VARIANTS}")
    if hash_buckets < 1 or min_df < 1:
        raise ConfigError(f"hash_buckets={hash_buckets} and min_df={min_df} must be >= 1")
    if train.empty:
        raise ConfigError("the training split is empty: nothing to fit the design on")
    numeric = [c for c, kind in train.dtypes.items() if pd.api.types.is_numeric_dtype(kind) and c not in _NOT_FEATURES]
    constant = [c for c in (*numeric, *CATEGORICAL) if train[c].nunique(dropna=False) <= 1]
    categorical = [c for c in CATEGORICAL if c not in constant]
    levels = OneHotEncoder().fit(_as_text(train, categorical)).categories_ if categorical else []
    onehot = variant == "onehot"
    return Design(
        variant,
        tuple(c for c in numeric if c not in constant),
        {column: [str(level) for level in names] for column, names in zip(categorical, levels)},
        _frequent(_title_bag(min_df=min_df), train["title"]) if onehot else (),
        _frequent(_terms_bag(min_df=min_df), train["artist_terms"]) if onehot else (),
        0 if onehot else hash_buckets,
        tuple(constant),
    )


def _as_text(songs: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return songs[list(columns)].astype(str)


def _hasher(n_buckets: int):
    """sklearn's signed hashing: a token adds ±its value to bucket |murmur3(token)| mod n,
    the sign from the hash, so tokens sharing a bucket add noise of mean zero to each
    other's columns instead of a bias (unsigned hashing only ever adds them up)."""
    return FeatureHasher(n_features=n_buckets, input_type="pair", alternate_sign=True)


def _hashed_tokens(songs: pd.DataFrame) -> list[list[tuple[str, float]]]:
    """Per song, (token, value) for the report's hashed tuple: ``artist_id=ID`` (1), each
    ``title:word`` occurrence (1) and each ``term:name`` (the term's weight)."""
    words = _title_bag().build_analyzer()
    return [
        [(f"artist_id={artist}", 1.0), *((f"title:{w}", 1.0) for w in words(title)),
         *((f"term:{t}", float(v)) for t, v in zip(terms, weights))]
        for artist, title, terms, weights in zip(songs["artist_id"], songs["title"], songs["artist_terms"], songs["artist_terms_weight"])
    ]


def design_blocks(songs: pd.DataFrame, design: Design) -> tuple[np.ndarray, sp.csr_matrix]:
    """(dense numeric block, sparse block) for these rows. Tokens outside the vocabulary
    and category levels unseen in training are left out (an all-zero encoding)."""
    numeric = songs[list(design.numeric)].to_numpy(np.float64)
    blocks = [sp.csr_matrix((len(songs), 0))]  # so that a design without sparse columns stacks too
    if design.categories:  # the levels are given: fitting only checks the columns, it learns nothing
        encoder = OneHotEncoder(categories=list(design.categories.values()), handle_unknown="ignore")
        blocks.append(encoder.fit(_as_text(songs, design.categories)).transform(_as_text(songs, design.categories)))
    if design.title_words:
        blocks.append(_title_bag(vocabulary=design.title_words).transform(songs["title"]))
    if design.terms:  # a term's value is its weight, not a count: sklearn's dict encoding, fixed to the vocabulary
        term_weights = DictVectorizer().fit([dict.fromkeys(design.terms, 1.0)])
        songs_terms = zip(songs["artist_terms"], songs["artist_terms_weight"])
        blocks.append(term_weights.transform(dict(zip(terms, weights)) for terms, weights in songs_terms))
    if design.hash_buckets:
        blocks.append(_hasher(design.hash_buckets).transform(_hashed_tokens(songs)))
    return numeric, sp.hstack(blocks, format="csr", dtype=np.float64)


def sparse_names(train: pd.DataFrame, design: Design, top: int = 3) -> list[str]:
    """Names of the sparse columns. A hash bucket is named by its most frequent training
    tokens, a minus sign marking those hashed with sign -1 (their weight counts negated)."""
    if not design.hash_buckets:
        return design.vocabulary
    occurrences, unique = pd.factorize(pd.Series([token for pairs in _hashed_tokens(train) for token, _ in pairs], dtype=object))
    hashed = _hasher(design.hash_buckets).transform([[(token, 1.0)] for token in unique])  # one entry per row
    signed = np.where(hashed.data < 0, "-", "") + unique.astype(str)
    counts = pd.DataFrame({"bucket": hashed.indices, "token": signed}).iloc[occurrences].value_counts()
    counts = counts.reset_index(name="n").sort_values(["bucket", "n", "token"], ascending=[True, False, True])
    by_bucket = counts.groupby("bucket")["token"]
    ranked, sizes = by_bucket.agg(lambda t: list(t[:top])), by_bucket.size()
    names = design.vocabulary
    for bucket in range(design.hash_buckets):
        tokens_here = ranked.get(bucket, [])
        more = ", …" if sizes.get(bucket, 0) > top else ""
        names.append(f"hash[{bucket}] ({', '.join(tokens_here)}{more})" if tokens_here else f"hash[{bucket}] (empty)")
    return names


def write_design(
    writer: ArtifactWriter, clean: FeatureSet, split_ref: ArtifactRef, variant: str, hash_buckets: int, min_df: int
) -> dict:
    """The design stage: one variant's design matrix over all split rows, with its
    column names and min-max scalers, everything fitted on the training rows."""
    split = read_split(clean.store, split_ref)
    columns = [f.name for f in clean.schema() if f.name not in ("rel_path", "artist_terms_freq")]
    songs = clean.read(columns).set_index("row_id").loc[split["row_id"]].reset_index()
    train = songs[(split["split"] == "train").to_numpy()]
    design = fit_design(train, variant, hash_buckets, min_df)
    numeric, sparse = design_blocks(songs, design)
    rows = split[["row_id", "group", "split"]].assign(y=songs["label"].to_numpy())
    writer.write_json("design.json", asdict(design))
    summary = save_design(writer, numeric, sparse, rows, list(design.numeric), sparse_names(train, design))
    return {**summary, "variant": variant, "constant_columns_dropped": list(design.constant)}


# -- the design artifact -----------------------------------------------------------------
@dataclass(frozen=True)
class DesignMatrix:
    X: sp.csr_matrix  # scaled, float32
    rows: pd.DataFrame  # row_id, group, split, y
    columns: list[str]


def save_design(
    writer: ArtifactWriter,
    numeric: np.ndarray,
    sparse: sp.csr_matrix,
    rows: pd.DataFrame,
    numeric_names: Sequence[str],
    sparse_names: Sequence[str],
) -> dict:
    """Write a design artifact: fit both scalers on the training rows and store the
    unscaled matrix. Returns its size, including the memory of the scaled matrix."""
    split = pd.Series(rows["split"].to_numpy(), index=rows["row_id"].to_numpy())
    scalers = {
        "numeric": scaling.fit_scaler_on_train(numeric, split, kind="minmax", columns=numeric_names),
        "sparse": scaling.fit_scaler_on_train(sparse, split, kind="maxabs", columns=sparse_names),
    }
    raw = sp.hstack([sp.csr_matrix(numeric), sparse], format="csr")
    buffer = io.BytesIO()
    sp.save_npz(buffer, raw, compressed=True)
    writer.write_bytes(MATRIX, buffer.getvalue())
    writer.write_parquet(ROWS, pa.Table.from_pandas(rows, preserve_index=False))
    writer.write_json(COLUMNS, [*numeric_names, *sparse_names])
    writer.write_json(SCALERS, {name: scaler.to_dict() for name, scaler in scalers.items()})
    X = _scaled(raw, scalers["numeric"], scalers["sparse"])
    return {
        "rows": X.shape[0],
        "columns": X.shape[1],
        "numeric_columns": len(numeric_names),
        "nnz": int(X.nnz),
        "matrix_bytes": int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes),
        "train_rows": scalers["numeric"].n_rows,
    }


def _scaled(raw: sp.csr_matrix, numeric: scaling.FittedScaler, sparse: scaling.FittedScaler) -> sp.csr_matrix:
    k = len(numeric.columns)
    dense = scaling.apply_scaler(numeric, raw[:, :k].toarray())
    return sp.hstack([sp.csr_matrix(dense), scaling.apply_scaler(sparse, raw[:, k:])], format="csr")


def _raw_design(store: ArtifactStore, ref: ArtifactRef) -> tuple[sp.csr_matrix, pd.DataFrame, dict]:
    raw = sp.load_npz(io.BytesIO(store.read_bytes(ref, MATRIX))).tocsr()
    scalers = {name: scaling.FittedScaler.from_dict(d) for name, d in store.read_json(ref, SCALERS).items()}
    return raw, store.read_parquet(ref, ROWS).to_pandas(), scalers


def load_design(store: ArtifactStore, ref: ArtifactRef) -> DesignMatrix:
    raw, rows, scalers = _raw_design(store, ref)
    return DesignMatrix(_scaled(raw, scalers["numeric"], scalers["sparse"]), rows, store.read_json(ref, COLUMNS))


def audit_leakage(store: ArtifactStore, design_ref: ArtifactRef, split_ref: ArtifactRef) -> dict:
    """From the saved artifacts: no group in two splits, the design's rows are the
    split's, and both scalers hold the statistics of the training rows only. Raises
    LeakageError listing every problem."""
    split = read_split(store, split_ref).set_index("row_id")
    raw, rows, scalers = _raw_design(store, design_ref)
    if set(rows["row_id"]) != set(split.index) or len(rows) != len(split):
        raise LeakageError(f"design {design_ref.key[:12]} covers other rows than split {split_ref.key[:12]}")
    assigned = split["split"].reindex(rows["row_id"])
    problems = leakage.group_problems(assigned, split["group"].reindex(rows["row_id"]))
    k = len(scalers["numeric"].columns)
    problems += scaling.audit_scaler(scalers["numeric"], raw[:, :k].toarray(), assigned)
    problems += scaling.audit_scaler(scalers["sparse"], raw[:, k:], assigned)
    return leakage.verdict(problems, split["group"].nunique(), scalers["numeric"].n_rows, f" of design {design_ref.key[:12]}")

