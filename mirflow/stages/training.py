"""A reusable, seeded training loop over batch sources, plus inference, model files and augmentations.

Data arrive as batches from a `BatchSource`, never as one in-memory tensor, so a
Parquet-backed source of log-mel batches plugs in exactly like `ArrayBatchSource`.

Reproducibility: `train_model` seeds torch from ``config.seed`` inside a forked RNG
(the caller's global RNG is left as it was), turns on deterministic algorithms and
shuffles with seeded numpy generators; on CPU two runs with the same seed, model
initialisation (see `mirflow.models.build_model(seed=)`) and sources give identical
weights.  On CUDA, deterministic algorithms are requested with ``warn_only`` (some
kernels have no deterministic version), so GPU runs are close, not bitwise equal.
Dropout draws from torch's process-global RNG, and the thread count and the
deterministic flag are process-global too: run one training at a time per process
(Dask workers with ``nthreads=1``).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import psutil
import torch
from torch import nn
from torch.nn import functional as F

from mirflow.core.errors import ConfigError, DataError, MirflowError
from mirflow.core.store import MODEL  # noqa: F401  (callers name it training.MODEL)
from mirflow.models import build_model, count_parameters

TASKS = ("multiclass", "multilabel", "binary", "regression")
METRIC_NAMES = {"multiclass": "accuracy", "binary": "accuracy", "multilabel": "micro_f1",
                "regression": "rmse"}
SCHEDULERS = ("plateau", "cosine", "cosine_restarts", "step", "none")
OPTIMIZERS = ("adam", "sgd")
BINARY_LOSSES = ("logits", "sigmoid")

Inputs = torch.Tensor | tuple[torch.Tensor, ...]
# augment(x, y, generator) -> (x, y), applied to every training batch on the training device;
# one with a ``set_epoch(epoch)`` method is told each epoch (e.g. mixup in the first epochs only).
Augment = Callable[[Inputs, torch.Tensor, np.random.Generator], tuple[Inputs, torch.Tensor]]


class TrainingDiverged(MirflowError):
    """The loss became NaN or infinite: the learning rate is too high for this model."""


class BatchSource(Protocol):
    """Re-iterable (x, y) batches; ``len()`` is the number of rows, not batches.

    x is an array or tensor (a tuple of them for multi-input models, e.g. ids plus
    dense features); y holds the targets, or None where there are none (inference).
    A source that shuffles may also define ``set_epoch(epoch: int)``: `train_model`
    calls it before each epoch so that the order depends only on (seed, epoch).
    """

    def __iter__(self) -> Iterator[tuple[Any, Any]]: ...

    def __len__(self) -> int: ...


class ArrayBatchSource:
    """Batches of in-memory arrays; shuffled per epoch from (seed, epoch) when ``shuffle``."""

    def __init__(self, X, y=None, batch_size: int = 32, shuffle: bool = False, seed: int = 0):
        self._multi_input = isinstance(X, tuple)
        self._inputs = tuple(np.asarray(part) for part in X) if self._multi_input else (np.asarray(X),)
        self._targets = None if y is None else np.asarray(y)
        self._rows = len(self._inputs[0])
        lengths = [len(part) for part in self._inputs] + ([] if y is None else [len(self._targets)])
        if any(length != self._rows for length in lengths):
            raise ConfigError(f"ArrayBatchSource: X and y must have the same number of rows, got {lengths}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def __len__(self) -> int:
        return self._rows

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        order = None
        if self.shuffle:
            order = np.random.default_rng((self.seed, self._epoch)).permutation(self._rows)
        for start in range(0, self._rows, self.batch_size):
            rows = slice(start, start + self.batch_size)
            if order is not None:
                rows = order[rows]
            x = tuple(part[rows] for part in self._inputs)
            yield (x if self._multi_input else x[0]), (None if self._targets is None else self._targets[rows])


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one `train_model` run.

    ``batch_size`` is what pipelines build their sources with; the loop takes batches as they come.
    ``scheduler``: "plateau" halves (``plateau_factor``) the learning rate after
    ``plateau_patience`` epochs without a lower validation loss; "cosine" anneals it
    to 0 over ``max_epochs``; "cosine_restarts" does so every ``restart_epochs`` epochs,
    starting again from ``lr`` (SGDR, Loshchilov & Hutter 2017); "step" multiplies it by ``plateau_factor`` every ``step_epochs``
    epochs (report 000: x0.8 every 5); "none" keeps it.  Early stopping ends training after
    ``patience`` epochs without a validation loss lower by more than ``min_delta`` and
    restores the best epoch.
    ``num_threads``: torch threads during training (None leaves torch's setting); 1 is
    the default because Dask already runs one task per core and torch would otherwise
    start one thread per core in every task.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    max_epochs: int = 100
    patience: int = 10
    min_delta: float = 0.0  # a validation-loss decrease smaller than this is no improvement
    scheduler: str = "plateau"
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    step_epochs: int = 5
    restart_epochs: int = 10
    optimizer: str = "adam"  # "adam" (L2 weight decay) or "sgd" (with ``momentum``)
    momentum: float = 0.9
    seed: int = 0
    task: str = "multiclass"
    device: str = "auto"  # "auto": cuda when available, else cpu
    num_threads: int | None = 1
    augment: Augment | None = None
    # binary: "logits" is BCEWithLogitsLoss; "sigmoid" is nn.Sigmoid then nn.BCELoss in
    # float32, as report 002 trains: a logit past ~17 makes the probability exactly 0 or
    # 1, where BCELoss clamps the log at -100 and passes no gradient, so a too-large
    # learning rate gets stuck there (the report's lr 1e-1) instead of recovering.
    binary_loss: str = "logits"

    def __post_init__(self):
        choices = {"task": TASKS, "scheduler": SCHEDULERS, "optimizer": OPTIMIZERS, "binary_loss": BINARY_LOSSES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"TrainConfig.{name}={getattr(self, name)!r}; choose one of {allowed}")
        for name in ("lr", "batch_size", "max_epochs", "patience", "step_epochs", "restart_epochs"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.min_delta < 0:
            raise ConfigError(f"TrainConfig.min_delta must be >= 0, got {self.min_delta!r}")
        if self.weight_decay < 0 or self.plateau_patience < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("TrainConfig: weight_decay and plateau_patience must be >= 0, "
                              "momentum in [0, 1)")
        if not 0 < self.plateau_factor < 1:
            raise ConfigError(f"TrainConfig.plateau_factor must be in (0, 1), got {self.plateau_factor!r}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"TrainConfig.num_threads must be >= 1 or None, got {self.num_threads!r}")
        if self.augment is not None and not callable(self.augment):
            raise ConfigError(f"TrainConfig.augment must be callable, got {self.augment!r}")

    def as_dict(self) -> dict:
        """JSON-able parameters for a manifest (the augment callable by its repr)."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        values["augment"] = None if self.augment is None else repr(self.augment)
        return values


@dataclass
class TrainResult:
    """What a run did; epochs are numbered from 1 and ``history[i]["epoch"] == i + 1``."""

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    history: list[dict]  # per epoch: epoch, train_loss, val_loss, val_metric, lr
    metric_name: str  # what val_metric is: accuracy, micro_f1 (threshold 0.5) or rmse
    train_seconds: float  # wall time of the epoch loop: training, validation and checkpoints
    peak_memory_bytes: int  # largest process RSS sampled after every training batch
    peak_cuda_memory_bytes: int | None  # torch.cuda.max_memory_allocated, None on CPU
    n_parameters: int
    device: str


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; otherwise a torch device name that must exist."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a torch device name") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r} but CUDA is not available")
        return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    return device


def _to_tensor(array, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(array)
    # float64 features would not match float32 weights; integer inputs are ids for embeddings.
    tensor = tensor.float() if tensor.is_floating_point() or tensor.dtype == torch.bool else tensor.long()
    return tensor.to(device)


def _inputs(x, device: torch.device) -> Inputs:
    return tuple(_to_tensor(part, device) for part in x) if isinstance(x, tuple) else _to_tensor(x, device)


def _targets(y, task: str, device: torch.device) -> torch.Tensor:
    if y is None:
        raise ConfigError("a training or validation source yielded a batch without targets (y is None)")
    target = torch.as_tensor(y)
    # Class indices for cross-entropy; everything else (incl. mixed soft labels) is float.
    target = target.long() if task == "multiclass" and target.ndim == 1 else target.float()
    return target.to(device)


def _call(method: Callable, inputs: Inputs) -> torch.Tensor:
    return method(*inputs) if isinstance(inputs, tuple) else method(inputs)


def _align(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Single-output heads give (batch, 1) where binary and regression targets are (batch,)."""
    if scores.ndim == target.ndim + 1 and scores.shape[-1] == 1:
        return scores.squeeze(-1)
    return scores


class _SigmoidBCELoss(nn.Module):
    """BCELoss of the sigmoid of logits (``TrainConfig.binary_loss="sigmoid"``)."""

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy(torch.sigmoid(scores), target)


def _loss_function(task: str, binary_loss: str = "logits") -> nn.Module:
    if task == "multiclass":
        return nn.CrossEntropyLoss()
    if task == "binary" and binary_loss == "sigmoid":
        return _SigmoidBCELoss()
    return nn.MSELoss() if task == "regression" else nn.BCEWithLogitsLoss()


def _metric(task: str, scores: torch.Tensor, target: torch.Tensor) -> float:
    if task == "multiclass":
        labels = target.argmax(-1) if target.ndim == 2 else target
        return (scores.argmax(-1) == labels).sum().item() / len(target)
    if task == "binary":
        return ((scores > 0) == (target > 0.5)).sum().item() / len(target)
    if task == "multilabel":
        predicted, truth = scores > 0, target > 0.5
        true_positives = (predicted & truth).sum().item()
        return 2 * true_positives / max(predicted.sum().item() + truth.sum().item(), 1)
    return torch.sqrt(((scores - target) ** 2).mean()).item()


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_rows(source: BatchSource, rows: int) -> None:
    if rows == 0:
        raise ConfigError(f"{type(source).__name__} yielded no rows")
    if rows != len(source):
        raise ConfigError(f"{type(source).__name__} yielded {rows} rows but its len() is {len(source)}")


def evaluate(model: nn.Module, source: BatchSource, task: str) -> dict[str, float]:
    """Mean loss and the task's metric (see `METRIC_NAMES`) of ``model`` on ``source``, in eval mode."""
    device, scores, targets = _model_device(model), [], []
    model.eval()
    with torch.no_grad():
        for x, y in source:
            target = _targets(y, task, device)
            scores.append(_align(_call(model, _inputs(x, device)), target).cpu())
            targets.append(target.cpu())
    _check_rows(source, sum(len(target) for target in targets))
    score, target = torch.cat(scores), torch.cat(targets)
    return {"loss": _loss_function(task)(score, target).item(), "metric": _metric(task, score, target)}


def _outputs(model: nn.Module, source: BatchSource, method: Callable) -> np.ndarray:
    device, outputs = _model_device(model), []
    model.eval()
    with torch.no_grad():
        for x, _ in source:
            outputs.append(_call(method, _inputs(x, device)).cpu())
    _check_rows(source, sum(len(output) for output in outputs))
    return torch.cat(outputs).numpy()


def predict(model: nn.Module, source: BatchSource, task: str) -> np.ndarray:
    """One row per source row, in source order: softmax probabilities (multiclass),
    sigmoid probabilities (binary: shape (rows,); multilabel) or values (regression)."""
    if task not in TASKS:
        raise ConfigError(f"task={task!r}; choose one of {TASKS}")
    scores = torch.from_numpy(_outputs(model, source, model))
    if task in ("binary", "regression") and scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if task == "multiclass":
        scores = scores.softmax(-1)
    elif task in ("binary", "multilabel"):
        scores = torch.sigmoid(scores)
    return scores.numpy()


def extract_hidden(model: nn.Module, source: BatchSource) -> np.ndarray:
    """``model.hidden_activations`` for every source row, in order (features for stacking)."""
    return _outputs(model, source, model.hidden_activations)


class _PeakRss:
    def __init__(self):
        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss

    def sample(self) -> None:
        self.peak = max(self.peak, self._process.memory_info().rss)


@contextmanager
def _reproducible(config: TrainConfig, device: torch.device):
    """Seed torch, force deterministic kernels and set the thread count; restore all afterwards.

    Deterministic mode would also fill every new tensor's memory with NaN (a check for
    kernels reading memory they never wrote, not needed for equal results): that memset of
    every activation and gradient cost about a tenth of a CPU training step, so it is off."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
        torch.utils.deterministic.fill_uninitialized_memory = False
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.utils.deterministic.fill_uninitialized_memory = fill
            torch.set_num_threads(threads)


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.plateau_factor, patience=config.plateau_patience)
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    if config.scheduler == "cosine_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=config.restart_epochs)
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_epochs, gamma=config.plateau_factor)
    return None


def _train_epoch(model, source, loss_function, optimizer, config, device, augment_rng, rss) -> float:
    model.train()
    total, rows = 0.0, 0
    for x, y in source:
        inputs, target = _inputs(x, device), _targets(y, config.task, device)
        if config.augment is not None:
            inputs, target = config.augment(inputs, target, augment_rng)
        loss = loss_function(_align(_call(model, inputs), target), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(target)
        rows += len(target)
        rss.sample()
    if rows == 0:
        raise ConfigError(f"training source {type(source).__name__} yielded no rows")
    return total / rows


def train_model(
    model: nn.Module,
    train: BatchSource,
    validation: BatchSource,
    config: TrainConfig,
    *,
    checkpoint_path: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train with early stopping on validation loss; return with the best epoch's weights, in eval mode.

    The model stays on the training device.  With ``checkpoint_path``, every new best
    model is written there atomically (`save_model`).
    ``on_epoch`` receives each epoch's history record (for logging or progress).
    """
    device = resolve_device(config.device)
    if checkpoint_path is not None and getattr(model, "spec", None) is None:
        raise ConfigError("checkpoint_path needs a model with a .spec (build it with mirflow.models)")
    loss_function, rss = _loss_function(config.task, config.binary_loss), _PeakRss()
    history: list[dict] = []
    best_loss, best_epoch, best_state = math.inf, 0, None
    with _reproducible(config, device):
        model.to(device)
        optimizer, augment_rng = _optimizer(model, config), np.random.default_rng(config.seed)
        scheduler = _scheduler(optimizer, config)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for epoch in range(1, config.max_epochs + 1):
            for scheduled in (train, config.augment):
                if hasattr(scheduled, "set_epoch"):
                    scheduled.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            train_loss = _train_epoch(model, train, loss_function, optimizer, config, device,
                                      augment_rng, rss)
            scores = evaluate(model, validation, config.task)
            record = {"epoch": epoch, "train_loss": train_loss, "val_loss": scores["loss"],
                      "val_metric": scores["metric"], "lr": lr}
            if not (math.isfinite(train_loss) and math.isfinite(scores["loss"])):
                raise TrainingDiverged(f"training diverged in epoch {epoch} (train loss {train_loss}, "
                                   f"validation loss {scores['loss']}); lower TrainConfig.lr={config.lr}")
            history.append(record)
            if record["val_loss"] < best_loss - config.min_delta:
                best_loss, best_epoch = record["val_loss"], epoch
                best_state = _cpu_state(model)
                if checkpoint_path is not None:
                    save_model(model, checkpoint_path)
            if on_epoch is not None:
                on_epoch(record)
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(record["val_loss"])
            elif scheduler is not None:
                scheduler.step()
            if epoch - best_epoch >= config.patience:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - start
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        best_epoch=best_epoch,
        best_val_loss=best_loss,
        epochs_run=len(history),
        history=history,
        metric_name=METRIC_NAMES[config.task],
        train_seconds=train_seconds,
        peak_memory_bytes=rss.peak,
        peak_cuda_memory_bytes=torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        n_parameters=count_parameters(model),
        device=str(device),
    )


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the state dict on the CPU (a copy even when the model is on the CPU)."""
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


def save_model(model: nn.Module, path: Path, inputs: dict | None = None) -> Path:
    """Write a model file to ``path`` atomically (temporary file + os.replace).

    The file holds ``model.spec`` (every constructor argument, so a changed default
    cannot change what is rebuilt), ``inputs`` (how the model's inputs are made, e.g.
    sample rate, frames, feature columns and a reference to the fitted preprocessing;
    JSON-able) and the state dict on the CPU."""
    path = Path(path)
    data = model_bytes(model, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def model_bytes(model: nn.Module, inputs: dict | None = None) -> bytes:
    """A model file (see `save_model`) as bytes, for an artifact or a run folder."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ConfigError("a model file needs a model with a .spec (build it with mirflow.models)")
    try:
        spec, inputs = json.loads(json.dumps(spec)), json.loads(json.dumps(inputs or {}))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model spec or inputs are not JSON-able: {error}") from None
    buffer = io.BytesIO()
    torch.save({"spec": spec, "inputs": inputs, "state_dict": _cpu_state(model)}, buffer)
    return buffer.getvalue()


MODEL_FILE_KEYS = {"spec", "inputs", "state_dict"}


def load_model(path: Path) -> tuple[nn.Module, dict]:
    """Rebuild a `save_model` file on the CPU, in eval mode: (model, inputs)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "model file does not exist")
    return load_model_bytes(path.read_bytes(), path)


def load_model_bytes(data: bytes, source: str | Path = "model file") -> tuple[nn.Module, dict]:
    """(model, inputs) from a model file's bytes; ``source`` names it in errors.

    Loads with ``weights_only=True`` (no code runs from the file) and refuses, naming
    the fix, a file it cannot rebuild exactly: one written before model files carried
    their full spec and inputs, a spec today's code builds differently, or weights that
    do not fit the rebuilt network exactly."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for corrupt or foreign files
        raise DataError(source, f"not a readable model file: {error}") from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise DataError(source, "not a mirflow model file (expected keys 'spec', 'inputs' and 'state_dict')")
    rerun = "re-run the flow that trained it to write a model file this version can rebuild"
    if set(payload) != MODEL_FILE_KEYS:
        raise DataError(source, f"model file from an older mirflow (keys {sorted(payload)}, not its full spec "
                                f"and inputs); {rerun}")
    spec = payload["spec"]
    try:
        model = build_model(spec)
        model.load_state_dict(payload["state_dict"], strict=True)
    except (ConfigError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:300]
        raise DataError(source, f"today's code cannot rebuild this model ({reason}); {rerun}") from None
    if model.spec != spec:
        changed = sorted(k for k in model.spec.keys() | spec.keys() if model.spec.get(k) != spec.get(k))
        raise DataError(source, f"today's code builds this spec differently (fields {changed}); {rerun}")
    return model.eval(), payload["inputs"]


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: np.random.Generator,
          n_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018): blend the batch with a shuffled copy of itself, one weight
    lam ~ Beta(alpha, alpha) per batch.  Integer class labels are one-hot encoded first
    (``n_classes`` needed); the float soft targets suit cross-entropy and BCE alike."""
    if not alpha > 0:
        raise ConfigError(f"mixup alpha must be > 0, got {alpha!r}")
    if not y.is_floating_point():
        if n_classes is None:
            raise ConfigError("mixup needs n_classes to mix integer class labels")
        y = F.one_hot(y.long(), n_classes).float()
    lam = float(generator.beta(alpha, alpha))
    partner = torch.from_numpy(generator.permutation(len(x))).to(x.device)
    return lam * x + (1 - lam) * x[partner], lam * y + (1 - lam) * y[partner]


def _band(size: int, max_width: int, n: int, generator: np.random.Generator) -> np.ndarray:
    """(n, size) boolean rows, each True on one random band of width uniform in [0, max_width]."""
    width = generator.integers(0, min(max_width, size) + 1, size=n)
    start = generator.integers(0, size - width + 1)
    positions = np.arange(size)
    return (positions >= start[:, None]) & (positions < (start + width)[:, None])


def spec_augment(x: torch.Tensor, time_mask: int, freq_mask: int,
                 generator: np.random.Generator) -> torch.Tensor:
    """SpecAugment masking (Park et al. 2019) of x (batch, ..., freq, time): per example one
    frequency band (width <= ``freq_mask``) and one time band (width <= ``time_mask``).
    Masked cells take the example's mean, so dB-scaled log-mels are not pushed to an
    extreme value.  Returns a new tensor."""
    if time_mask < 0 or freq_mask < 0:
        raise ConfigError(f"spec_augment masks must be >= 0, got time_mask={time_mask}, "
                          f"freq_mask={freq_mask}")
    if x.ndim < 3:
        raise ConfigError(f"spec_augment expects (batch, ..., freq, time), got shape {tuple(x.shape)}")
    n, n_freq, n_time = x.shape[0], x.shape[-2], x.shape[-1]
    freq_band, time_band = _band(n_freq, freq_mask, n, generator), _band(n_time, time_mask, n, generator)
    masked = freq_band[:, :, None] | time_band[:, None, :]
    masked = torch.from_numpy(masked).to(x.device).view(n, *[1] * (x.ndim - 3), n_freq, n_time)
    return torch.where(masked, x.mean(dim=tuple(range(1, x.ndim)), keepdim=True), x)


@dataclass(frozen=True)
class BatchAugment:
    """A picklable `TrainConfig.augment`: SpecAugment masks, then mixup (``mixup_alpha`` 0 disables it)."""

    time_mask: int = 0
    freq_mask: int = 0
    mixup_alpha: float = 0.0
    n_classes: int | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: np.random.Generator):
        if self.time_mask or self.freq_mask:
            x = spec_augment(x, self.time_mask, self.freq_mask, generator)
        if self.mixup_alpha > 0:
            x, y = mixup(x, y, self.mixup_alpha, generator, self.n_classes)
        return x, y
