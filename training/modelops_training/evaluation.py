"""Model evaluation: classification metrics and the PNG plots logged with every run (not Prometheus:
that is what "metrics" means elsewhere in modelops)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, F1 and ROC-AUC; macro-averaged (one-vs-rest AUC) when there are >2 classes."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    preds = probs.argmax(axis=1)
    binary = probs.shape[1] == 2
    out = {
        "accuracy": float(accuracy_score(y_true, preds)),
        "f1": float(f1_score(y_true, preds, average="binary" if binary else "macro", zero_division=0)),
    }
    try:
        if binary:
            out["roc_auc"] = float(roc_auc_score(y_true, probs[:, 1]))
        else:
            out["roc_auc"] = float(
                roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=list(range(probs.shape[1])))
            )
    except ValueError:  # a split missing a class, or NaN outputs from a sabotaged model
        out["roc_auc"] = float("nan")
    return out


def plot_confusion_matrix(y_true: np.ndarray, preds: np.ndarray, class_names: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, preds, labels=list(range(len(class_names))))
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(class_names), 1 + 0.6 * len(class_names)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black"
            )
    ax.set_title("confusion matrix (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curves(history: list[dict[str, float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["train_loss"] for h in history], label="train")
    left.plot(epochs, [h["val_loss"] for h in history], label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    for key in ("val_accuracy", "val_f1", "val_roc_auc"):
        right.plot(epochs, [h[key] for h in history], label=key)
    right.set_xlabel("epoch")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
