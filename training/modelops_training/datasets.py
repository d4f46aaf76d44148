"""The scikit-learn datasets we train on: one fixed test split per dataset, the rest split by seed.

Both ship inside scikit-learn, so nothing is downloaded at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATASETS = ("breast_cancer", "digits")
TEST_SPLIT_SEED = 0  # the held-out rows never depend on the training seed


@dataclass
class DatasetSplit:
    """Stratified train/validation/test arrays, float32 features shaped as the model expects."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    feature_names: list[str] | None = None  # one per column of a flattened row; None: x0, x1, ...

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape (no batch axis)."""
        return tuple(self.x_train.shape[1:])


def load_dataset(name: str, *, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> DatasetSplit:
    """Load ``name`` and split it stratified by class (60/20/20 by default).

    The test rows are the same for every ``seed`` (``TEST_SPLIT_SEED``): versions trained with
    different seeds are compared on the same held-out rows, and none of them trained on another's
    test rows. ``seed`` varies only the train/validation split (and, in training, the weights).
    """
    from sklearn import datasets as skd
    from sklearn.model_selection import train_test_split

    if name == "breast_cancer":
        bunch = skd.load_breast_cancer()
        x = bunch.data.astype(np.float32)
        class_names = [str(c) for c in bunch.target_names]
        feature_names = [str(f) for f in bunch.feature_names]
    elif name == "digits":
        bunch = skd.load_digits()
        x = bunch.images.astype(np.float32)[:, None, :, :]  # [n, 1, 8, 8], raw 0..16 pixels
        class_names = [str(c) for c in bunch.target_names]
        feature_names = None  # pixels: the reference profile names them x0..x63
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    y = bunch.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=TEST_SPLIT_SEED
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), stratify=y_rest, random_state=seed
    )
    return DatasetSplit(name, x_train, y_train, x_val, y_val, x_test, y_test, class_names, feature_names)
