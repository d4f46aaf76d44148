"""Train one model, log everything to MLflow, optionally register it and move an alias.

The logged model is what the exporter and the inference server consume: pytorch flavor,
one float32 input ``input`` (a batch of raw features), softmax ``probabilities`` out, a
signature with a dynamic batch axis and an input example holding at least one row per class.
With it goes the labelled test split (``replay_set.EVALUATION_ARTIFACT``), which the operator
replays against this version and the one it would replace, and the training split's reference
profile (``reference.ARTIFACT``), which the server's drift series are compared with.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .datasets import DatasetSplit, load_dataset
from .errors import TrainingError
from .evaluation import classification_metrics, plot_confusion_matrix, plot_learning_curves
from .mlflow_client import ensure_experiment, fluent_tracking_uri
from .models import Sabotaged, build_model
from .reference import log_reference, profile
from .registry import Promotion, promote_if_better, register, set_alias
from .replay_set import log_evaluation_set

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = {"breast_cancer": 40, "digits": 15}


@dataclass
class TrainConfig:
    dataset: str
    epochs: int | None = None  # None: the dataset's default
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    experiment: str | None = None  # None: "modelops-<dataset>"
    register: str | None = None
    alias: str | None = None
    promote_if_better: str | None = None
    sabotage: str | None = None
    progress: bool = True
    tracking_uri: str | None = None

    def resolved_epochs(self) -> int:
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS[self.dataset]


@dataclass
class TrainResult:
    run_id: str
    model_uri: str  # the logged model, models:/m-<id>
    tracking_uri: str
    test_metrics: dict[str, float]
    registered_name: str | None = None
    version: str | None = None
    registered_uri: str | None = None  # models:/NAME/VERSION
    promotion: Promotion | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def seed_everything(seed: int) -> torch.Generator:
    """Same seed, same weights, same batches, same metrics."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def input_example(data: DatasetSplit, rows: int = 5) -> np.ndarray:
    """Test rows covering every class first, so a constant-output model visibly disagrees."""
    picks = [int(np.flatnonzero(data.y_test == c)[0]) for c in range(data.num_classes) if (data.y_test == c).any()]
    rest = [i for i in range(len(data.y_test)) if i not in picks]
    picks += rest[: max(0, rows - len(picks))]
    return data.x_test[sorted(picks)].copy()


def predict(model: nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        logits = model.logits(torch.from_numpy(x))
        loss = float(nn.functional.cross_entropy(logits, torch.from_numpy(y)))
    out = classification_metrics(y, predict(model, x))
    out["loss"] = loss
    return out


def fit(
    model: nn.Module, data: DatasetSplit, cfg: TrainConfig, gen: torch.Generator, on_epoch=None
) -> list[dict[str, float]]:
    """Plain Adam + cross-entropy on logits; returns per-epoch metrics."""
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    history = []
    epochs = cfg.resolved_epochs()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        batches = range(0, len(x), cfg.batch_size)
        total = 0.0
        bar = tqdm(
            batches, desc=f"epoch {epoch}/{epochs}", leave=False, unit="batch", disable=None if cfg.progress else True
        )  # None: bars only on a terminal
        for start in bar:
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model.logits(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.close()
        val = evaluate(model, data.x_val, data.y_val)
        row = {"epoch": epoch, "train_loss": total / len(x), **{f"val_{k}": v for k, v in val.items()}}
        history.append(row)
        if cfg.progress:
            log.info(
                "epoch %d/%d train_loss=%.4f val_loss=%.4f val_accuracy=%.4f",
                epoch,
                epochs,
                row["train_loss"],
                row["val_loss"],
                row["val_accuracy"],
            )
        if on_epoch:
            on_epoch(row)
    return history


def train(cfg: TrainConfig) -> TrainResult:
    """Train, evaluate on the test split, log to MLflow, register and move aliases as asked."""
    if cfg.dataset not in DEFAULT_EPOCHS:
        raise TrainingError(f"unknown dataset {cfg.dataset!r}; choose one of {', '.join(DEFAULT_EPOCHS)}")
    if (cfg.alias or cfg.promote_if_better) and not cfg.register:
        raise TrainingError("--alias/--promote-if-better need --register NAME (aliases belong to a registered model)")
    if cfg.sabotage:
        try:
            Sabotaged.parse(cfg.sabotage)
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc
    with fluent_tracking_uri(cfg.tracking_uri) as tracking_uri:
        return _train_and_log(cfg, tracking_uri)


def _train_and_log(cfg: TrainConfig, tracking_uri: str) -> TrainResult:
    import mlflow
    from mlflow.models import infer_signature

    experiment_id = ensure_experiment(cfg.experiment or f"modelops-{cfg.dataset}", tracking_uri)

    gen = seed_everything(cfg.seed)
    data = load_dataset(cfg.dataset, seed=cfg.seed)
    model = build_model(cfg.dataset, data.input_shape, data.num_classes)
    if hasattr(model, "fit_scaler"):
        model.fit_scaler(data.x_train)

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{cfg.dataset}-seed{cfg.seed}") as run:
        mlflow.log_params(
            {
                "dataset": cfg.dataset,
                "epochs": cfg.resolved_epochs(),
                "batch_size": cfg.batch_size,
                "lr": cfg.lr,
                "weight_decay": cfg.weight_decay,
                "seed": cfg.seed,
                "architecture": type(model).__name__,
                "num_parameters": sum(p.numel() for p in model.parameters()),
                "train_size": len(data.y_train),
                "val_size": len(data.y_val),
                "test_size": len(data.y_test),
                "sabotage": cfg.sabotage or "none",
            }
        )
        mlflow.set_tags({"modelops.dataset": cfg.dataset, "modelops.sabotage": cfg.sabotage or "none"})

        def log_epoch(row: dict) -> None:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))

        history = fit(model, data, cfg, gen, on_epoch=log_epoch)
        if cfg.sabotage:
            model = Sabotaged(model, data.num_classes, cfg.sabotage)
        model.eval()
        test = evaluate(model, data.x_test, data.y_test)
        mlflow.log_metrics({f"test_{k}": v for k, v in test.items()})
        log_evaluation_set(data.x_test, data.y_test)
        # the model's own answers on the rows it learned from: what served traffic is compared with
        log_reference(profile(data.x_train, predict(model, data.x_train), data.feature_names))
        with tempfile.TemporaryDirectory() as tmp:
            preds = predict(model, data.x_test).argmax(axis=1)
            plot_confusion_matrix(data.y_test, preds, data.class_names, Path(tmp) / "confusion_matrix.png")
            plot_learning_curves(history, Path(tmp) / "learning_curves.png")
            mlflow.log_artifacts(tmp, "plots")

        example = input_example(data)
        signature = infer_signature(example, predict(model, example))
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        result = TrainResult(
            run.info.run_id, info.model_uri, tracking_uri, {f"test_{k}": v for k, v in test.items()}, history=history
        )

    if cfg.register:
        result.registered_name = cfg.register
        result.version = register(info.model_uri, cfg.register, run_id=result.run_id, tracking_uri=tracking_uri)
        result.registered_uri = f"models:/{cfg.register}/{result.version}"
        if cfg.promote_if_better:
            result.promotion = promote_if_better(
                cfg.register,
                result.version,
                alias=cfg.alias or "champion",
                metric=cfg.promote_if_better,
                tracking_uri=tracking_uri,
            )
        elif cfg.alias:
            set_alias(cfg.register, cfg.alias, result.version, tracking_uri=tracking_uri)
    return result
