"""Every hack/setup.d step, and the wheel server a docker build installs from, run the way a fresh
machine runs them: from a copy of hack/ with empty tool, cache and data folders, several times.

These caught what CI's warm machine never showed: `kubectl version | head -1` dying of SIGPIPE under
pipefail after the step's stamp was written, and a bridge address read from a field docker 20.10
leaves out. The static check below keeps the first class of bug out of every script in hack/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = 3


def fresh_root(tmp_path: Path) -> Path:
    """A project root holding only hack/ (so .cache, .tools and .data start empty)."""
    root = tmp_path / "root"
    shutil.copytree(ROOT / "hack", root / "hack", ignore=shutil.ignore_patterns("kube", "traefik"))
    return root


def bash(root: Path, script: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    return subprocess.run(["bash", "-c", script], cwd=root, env=env, capture_output=True, text=True,
                           timeout=timeout)


@pytest.mark.parametrize("run", range(RUNS))
def test_every_setup_step_succeeds_from_empty_folders(tmp_path, run):
    root = fresh_root(tmp_path)
    steps = sorted((root / "hack/setup.d").glob("*.sh"))
    assert steps, "no hack/setup.d steps found"
    for step in steps:
        r = bash(root, f"bash {step}")
        assert r.returncode == 0, f"{step.name} failed ({r.returncode}) from empty folders:\n{r.stderr}"
    tools = root / ".tools/bin"
    for tool, args in (("kubectl", ["version", "--client"]), ("helm", ["version", "--short"])):
        out = subprocess.run([str(tools / tool), *args], capture_output=True, text=True, check=True).stdout
        assert out.strip(), f"{tool} printed nothing"
    # a second run over the now-full folders is a no-op that still succeeds
    for step in steps:
        assert bash(root, f"bash {step}").returncode == 0


def test_a_step_that_fails_leaves_no_stamp(tmp_path):
    """The kube-tools step cannot install kubectl (a directory is in the way): it fails, and the next
    run must not take the step as done."""
    root = fresh_root(tmp_path)
    (root / ".tools/bin/kubectl").mkdir(parents=True)
    r = bash(root, "bash hack/setup.d/30-kube-tools.sh")
    assert r.returncode != 0
    assert not list((root / ".tools/bin").glob(".kube-tools-*")), "stamp written by a step that failed"


@pytest.mark.docker
@pytest.mark.parametrize("run", range(RUNS))
def test_a_container_on_the_bridge_downloads_from_the_wheel_server(tmp_path, run):
    """What a `docker build` does with WHEELS_URL, on the real daemon: the address comes from
    hack/docker_bridge.py, the server from lib.sh's with_wheel_server."""
    subprocess.run(["bash", str(ROOT / "hack/docker.sh")], check=True, timeout=120)
    subprocess.run(["bash", str(ROOT / "hack/base-image.sh")], check=True, timeout=900)
    root = fresh_root(tmp_path)
    served = tmp_path / "wheels"
    served.mkdir()
    (served / "probe.txt").write_text(f"run {run}\n")
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "fetch.py").write_text("import os, urllib.request\n"
                                    "url = os.environ['WHEELS_URL'] + 'probe.txt'\n"
                                    "print(urllib.request.urlopen(url, timeout=10).read().decode())\n")
    r = bash(root, f"source hack/lib.sh; with_wheel_server {served} sh -c "
             f"'docker run --rm -v {probe}:/probe:ro -e WHEELS_URL=\"$WHEELS_URL\" local/python-base:bookworm "
             f"python3 /probe/fetch.py'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"run {run}"
    address = subprocess.run(["python3", str(ROOT / "hack/docker_bridge.py")], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", address), address


# A pipeline whose last reader may exit before the writer is done: under `set -o pipefail` the
# writer's SIGPIPE (141) fails the pipeline, or flips a `&&`/`||` that follows it.
EARLY_EXIT_READER = re.compile(r"\|\s*(head\b|grep\s+(-\w*[qm]\w*|--quiet|--max-count)\b|sed\s+(-n\s+)?'?\d*q)")


def test_no_script_in_hack_pipes_into_a_reader_that_exits_early():
    offenders = []
    for script in sorted(ROOT.glob("hack/**/*.sh")) + [ROOT / ".ci/run"]:
        for n, line in enumerate(script.read_text().splitlines(), 1):
            code = line.split(" #", 1)[0]
            if not code.lstrip().startswith("#") and EARLY_EXIT_READER.search(code):
                offenders.append(f"{script.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "pipes into a reader that may exit early (use a glob, a here-string or a variable):\n" + \
        "\n".join(offenders)
