import numpy as np
import torch

from modelops_training.datasets import load_dataset
from modelops_training.models import DigitsCNN, Sabotaged, TabularMLP


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
