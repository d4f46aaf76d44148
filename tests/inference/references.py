"""`modelops.reference/v1` profiles built as the contract (docs: issue 14, section 1) says training builds
them, so the server's tests do not depend on the training package: deciles per flattened column, np.unique'd
interior edges, counts by searchsorted(side="right")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modelops_registry.reference import FORMAT, MAX_FEATURES


def profile(x: np.ndarray, names: list[str] | None = None, classes: dict[str, int] | None = None) -> dict:
    rows = x.reshape(x.shape[0], -1)[:, :MAX_FEATURES].astype(np.float64)
    features = []
    for j in range(rows.shape[1]):
        column = rows[:, j][np.isfinite(rows[:, j])]
        edges = np.unique(np.quantile(column, np.linspace(0.1, 0.9, 9))) if column.size else np.array([])
        edges = edges[(edges > column.min()) & (edges <= column.max())] if column.size else edges
        counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=edges.size + 1)
        features.append({"name": names[j] if names else f"x{j}", "edges": edges.tolist(), "counts": counts.tolist()})
    classes = classes or {"0": x.shape[0] // 2, "1": x.shape[0] - x.shape[0] // 2}
    return {"format": FORMAT, "rows": int(x.shape[0]), "features": features,
            "predictions": {"classes": list(classes), "counts": list(classes.values())}}


def write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path
