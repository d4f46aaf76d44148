"""MLflow's usage telemetry is off in everything modelops ships unless a user turns it on.

MLflow 3 starts a telemetry thread at import unless told not to; that thread sets and removes an
environment variable, which raced `requests` iterating os.environ (a KeyError that failed
`make demo` while training). Each entry point is checked the way it runs: a fresh interpreter, an
environment without any of the CI markers that would disable telemetry anyway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .charts.conftest import render

ROOT = Path(__file__).resolve().parents[1]
# MLflow also disables telemetry in CI and under pytest: strip those markers so the check can fail
CI_MARKERS = ("CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE",
              "CIRCLECI", "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "TEAMCITY_VERSION",
              "DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY")
PROBE = "import mlflow.telemetry.client as t; print('on' if t.get_telemetry_client() else 'off')"


def telemetry(first_import: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in CI_MARKERS}
    code = f"{first_import}\nimport mlflow\n{PROBE}" if first_import else f"import mlflow\n{PROBE}"
    res = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip().splitlines()[-1]


def test_mlflow_alone_would_send_telemetry():
    """The control: without modelops in the process, this environment has telemetry on."""
    assert telemetry("") == "on"


@pytest.mark.parametrize("entry_point", [
    "import modelops_training.train_cli",     # modelops-train
    "import modelops_training.export_cli",    # modelops-export (the export Jobs)
    "import modelops_inference.cli",          # modelops-serve
    "import modelops_operator.main",          # modelops-operator
])
def test_every_entry_point_turns_it_off(entry_point):
    assert telemetry(entry_point) == "off"


def test_a_user_can_turn_it_on():
    assert telemetry("import modelops_training.train_cli", MLFLOW_DISABLE_TELEMETRY="false") == "on"


def test_the_scripts_and_images_turn_it_off():
    assert 'MLFLOW_DISABLE_TELEMETRY=${MLFLOW_DISABLE_TELEMETRY:-true}' in (ROOT / "hack/lib.sh").read_text()
    for dockerfile in sorted(ROOT.glob("Dockerfile.*")):
        assert "MLFLOW_DISABLE_TELEMETRY=true" in dockerfile.read_text(), dockerfile.name


@pytest.mark.parametrize(("value", "expected"), [(None, "true"), ("true", "false")])
def test_the_chart_turns_it_off_in_the_operator_and_mlflow_unless_asked(value, expected):
    docs = render(sets={"mlflowTelemetry": value} if value else None)
    seen = {}
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            seen[container["name"]] = env.get("MLFLOW_DISABLE_TELEMETRY")
    assert seen and set(seen.values()) == {expected}, seen
