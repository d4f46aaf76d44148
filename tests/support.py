"""Helpers shared by the test suites and benchmarks (plain functions, not fixtures): a free local
port, polling until something holds, a real `mlflow server` process, and the local cluster's shared
Gateway."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GatewayRef:
    """A Gateway (and optionally one of its listeners) as an HTTPRoute's parentRef names it."""

    namespace: str
    name: str
    section_name: str = ""

    @property
    def env(self) -> str:
        """The form of the operator's MODELOPS_GATEWAY (the chart's operator.gateway): namespace/name[/sectionName]."""
        return "/".join(p for p in (self.namespace, self.name, self.section_name) if p)

    @property
    def parent_ref(self) -> dict[str, str]:
        ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": self.namespace, "name": self.name}
        return {**ref, "sectionName": self.section_name} if self.section_name else ref


# the local cluster's shared Gateway (hack/cluster/manifests/traefik.yaml): its listener "web" is Traefik's
# web entry point, so routes answer on the ingress port (MODELOPS_INGRESS_PORT, 30080)
SHARED_GATEWAY = GatewayRef("kube-system", "modelops", "web")


def free_port() -> int:
    """A TCP port that no socket holds on any local address (so free on 127.0.0.1 too) right now."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = 240, interval: float = 1.0, *,
               ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """Polls predicate every `interval` seconds until it returns something truthy, and returns that.
    An exception of a type in `ignore` counts as one more falsy try; any other propagates. After
    `timeout` seconds fails with an AssertionError naming `what`, the timeout and the last value seen."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except ignore as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def stop_process_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process's group (it was started with start_new_session), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


@dataclass(frozen=True)
class MlflowServer:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def mlflow_server(tmp: Path, *, host: str = "127.0.0.1", also_called: tuple[str, ...] = (),
                  workers: int = 1, timeout: float = 180) -> Iterator[MlflowServer]:
    """A real `mlflow server` (sqlite store and served artifacts under `tmp`) in its own process
    group, stopped on exit. `also_called`: addresses clients reach it by besides localhost (pods
    call the node's address), which MLflow's Host check must allow. A failed start raises with the
    tail of its log."""
    port = free_port()
    log = tmp / "mlflow-server.log"
    hosts = ",".join(f"{name}:{port}" for name in (*also_called, "127.0.0.1", "localhost"))
    bin_dir = Path(sys.executable).parent
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "mlflow"), "server", "--host", host, "--port", str(port),
             "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db", "--serve-artifacts",
             "--artifacts-destination", str(tmp / "artifacts"), "--workers", str(workers),
             "--allowed-hosts", hosts],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp,
            # it execs uvicorn; MLflow 3's job runners (huey consumers, for its GenAI jobs) are not
            # needed here and cost a dozen processes per server
            env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
    server = MlflowServer(port, log)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(server.url):
            if proc.poll() is not None or time.monotonic() > deadline:
                exited = proc.poll() is not None
                state = f"exited with {proc.returncode}" if exited else f"not healthy after {timeout:.0f}s"
                raise RuntimeError(f"mlflow server {state}; the end of {log}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield server
    except Exception:
        # pytest shows this beside a failure inside the block: what the server said meanwhile
        print(f"the end of the mlflow server's log ({log}):\n{log.read_text()[-3000:]}")
        raise
    finally:
        stop_process_group(proc)


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def built_image(component: str, image: str, timeout: float = 1200) -> str:
    """Dockerfile.<component> built as `image` by hack/build-image.sh (the daemon started if needed);
    a skip when docker is not installed (a failure under make test, which installs it)."""
    import pytest

    root = Path(__file__).resolve().parents[1]
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed: run `make setup` (make test installs and starts it)")
    subprocess.run(["bash", str(root / "hack/docker.sh")], check=True, timeout=120)
    subprocess.run(["bash", str(root / "hack/build-image.sh"), component, image], check=True, timeout=timeout)
    return image
