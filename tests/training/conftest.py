"""Training fixtures: one embedded MLflow store per session holding real trained versions.

Training dominates the suite's runtime, so each model is trained once (few epochs) and every
export test reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import tracking

BC, DIGITS = "test-breast-cancer", "test-digits"


@dataclass
class Store:
    uri: str
    data_dir: str


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Store:
    """An embedded sqlite store with artifacts next to it, as the default data dir lays it out."""
    root = tmp_path_factory.mktemp("modelops-data")
    return Store(uri=f"sqlite:///{root}/mlflow/mlflow.db", data_dir=str(root))


@pytest.fixture
def local(store, monkeypatch):
    """Point MLflow and MODELOPS_DATA_DIR at the session store for one test."""
    monkeypatch.setenv("MODELOPS_DATA_DIR", store.data_dir)
    with tracking(store.uri):
        yield store


def _train(store: Store, **kw):
    from modelops_training.train import TrainConfig, train

    return train(TrainConfig(progress=False, tracking_uri=store.uri, **kw))


@pytest.fixture(scope="session")
def bc_v1(store):
    """breast_cancer MLP, 3 epochs, registered as v1 of BC with alias champion."""
    return _train(store, dataset="breast_cancer", epochs=3, register=BC, alias="champion")


@pytest.fixture(scope="session")
def digits_v1(store):
    """digits CNN, 2 epochs, registered as v1 of DIGITS with alias champion."""
    return _train(store, dataset="digits", epochs=2, register=DIGITS, alias="champion")


@pytest.fixture(scope="session")
def trainer(store):
    """Train more versions into the session store from a test."""
    return lambda **kw: _train(store, **kw)


@pytest.fixture(scope="session", autouse=True)
def _outside_the_checkout(tmp_path_factory):
    """Run from a scratch folder: anything MLflow defaults to the cwd (mlflow.db, ./mlruns) lands there."""
    import os

    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)
