import numpy as np
import pytest

from modelops_training.datasets import load_dataset


@pytest.mark.parametrize("name, shape, classes", [("breast_cancer", (30,), 2), ("digits", (1, 8, 8), 10)])
def test_split_shapes_match_the_model_contract(name, shape, classes):
    data = load_dataset(name)
    assert data.input_shape == shape
    assert data.num_classes == classes
    assert data.x_train.dtype == np.float32
    total = len(data.y_train) + len(data.y_val) + len(data.y_test)
    assert abs(len(data.y_test) / total - 0.2) < 0.01


def test_split_is_stratified_and_deterministic():
    a, b = load_dataset("breast_cancer", seed=3), load_dataset("breast_cancer", seed=3)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    ratios = [split.mean() for split in (a.y_train, a.y_val, a.y_test)]
    assert max(ratios) - min(ratios) < 0.02


@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_the_test_split_is_the_same_for_every_seed_and_the_train_split_is_not(name):
    a, b = load_dataset(name, seed=1), load_dataset(name, seed=2)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, b.x_train)
    # the held-out rows stay out of every seed's training and validation rows
    test_rows = {row.tobytes() for row in a.x_test}
    assert not test_rows & {row.tobytes() for row in np.concatenate([b.x_train, b.x_val])}


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        load_dataset("iris")
