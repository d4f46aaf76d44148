import numpy as np
import pytest
import torch

from modelops_training.datasets import load_dataset
from modelops_training.models import DigitsCNN, Sabotaged, TabularMLP, build_model


def test_mlp_bakes_the_scaler_in_and_outputs_probabilities():
    data = load_dataset("breast_cancer")
    model = TabularMLP(30, 2).eval()
    model.fit_scaler(data.x_train)
    np.testing.assert_allclose(model.mean.numpy(), data.x_train.mean(axis=0), rtol=1e-5)
    probs = model(torch.from_numpy(data.x_test[:7]))
    assert probs.shape == (7, 2)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(7))


def test_cnn_takes_raw_pixels_and_outputs_probabilities():
    x = torch.from_numpy(load_dataset("digits").x_test[:4])
    probs = DigitsCNN().eval()(x)
    assert probs.shape == (4, 10)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(4))


def test_constant_sabotage_answers_the_last_class_whatever_the_input():
    model = Sabotaged(TabularMLP(30, 2), 2, "constant").eval()
    probs = model(torch.randn(5, 30))
    torch.testing.assert_close(probs, torch.tensor([[0.0, 1.0]] * 5))


def test_nan_sabotage_answers_nan_with_the_right_shape():
    probs = Sabotaged(DigitsCNN(), 10, "nan").eval()(torch.zeros(3, 1, 8, 8))
    assert probs.shape == (3, 10) and torch.isnan(probs).all()


@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_flip_sabotage_moves_about_that_fraction_of_answers_and_keeps_their_confidence(name):
    data = load_dataset(name)
    torch.manual_seed(0)
    inner = build_model(name, data.input_shape, data.num_classes).eval()
    if hasattr(inner, "fit_scaler"):
        inner.fit_scaler(data.x_train)
    x = torch.from_numpy(data.x_test)
    with torch.no_grad():
        honest, flipped = inner(x), Sabotaged(inner, data.num_classes, "flip=0.2").eval()(x)
    moved = (honest.argmax(dim=1) != flipped.argmax(dim=1)).float().mean().item()
    assert abs(moved - 0.2) <= 0.07
    # a rolled vector: the same probabilities, moved one class along
    torch.testing.assert_close(flipped.sort(dim=1).values, honest.sort(dim=1).values)
    with torch.no_grad():
        again = Sabotaged(inner, data.num_classes, "flip=0.2").eval()(x)
    torch.testing.assert_close(again, flipped)


def test_flip_sabotage_of_one_moves_every_answer():
    inner = TabularMLP(30, 2).eval()
    x = torch.from_numpy(load_dataset("breast_cancer").x_test)
    with torch.no_grad():
        moved = inner(x).argmax(dim=1) != Sabotaged(inner, 2, "flip=1").eval()(x).argmax(dim=1)
    assert moved.all()


@pytest.mark.parametrize("mode", ["flip", "flip=", "flip=0", "flip=1.5", "flip=-0.1", "flip=abc", "flip=nan"])
def test_flip_fraction_outside_zero_to_one_is_refused_by_name(mode):
    with pytest.raises(ValueError, match="flip fraction must be a number with 0 < fraction <= 1"):
        Sabotaged(TabularMLP(30, 2), 2, mode)


def test_unknown_sabotage_lists_the_modes():
    with pytest.raises(ValueError, match=r"unknown sabotage 'zero'; choose one of constant, nan, flip=<fraction>"):
        Sabotaged(TabularMLP(30, 2), 2, "zero")
