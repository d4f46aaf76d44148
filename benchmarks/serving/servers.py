"""The servers under test as processes: how each is started, when it is ready, what CPU its process tree
used. Each runs in its own session (process group) and is stopped with the group, so nothing outlives
the benchmark.

modelops-serve runs this checkout's `inference/` (PYTHONPATH), not whatever the venv has installed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PEERS = Path(__file__).resolve().parent / "peers"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the benchmark dies, even by SIGKILL (Linux prctl), so no
    server or load generator outlives a benchmark that was killed."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its reaped children) from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()  # the command name may hold spaces and parentheses
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / CLOCK_TICK


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of `root` and every live descendant (all their threads), plus what
    exited children left in their parents' counters."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            table[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][1]
        todo.extend(children.get(pid, []))
    return total


@dataclass
class Server:
    """A running server: its process, HTTP port and, when it serves one, gRPC port."""

    name: str
    process: subprocess.Popen
    http_port: int
    grpc_port: int | None = None
    notes: list[str] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def counters(self, prefix: str = "modelops_inference_batch_") -> dict[str, float]:
        """The `_sum` and `_count` series under `prefix` on the server's /metrics (empty if none)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        return scrape(text, prefix)


def scrape(text: str, prefix: str) -> dict[str, float]:
    """Sums of the `_sum` and `_count` samples of the metrics named `prefix...` in a Prometheus exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name.endswith(("_sum", "_count")):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(port: int, paths: list[str], process: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Until every path answers 200 over HTTP (no paths: until the port accepts connections)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; log {log}:\n{_tail(log)}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
            if all(_get(port, p) == 200 for p in paths) if paths else _listening(port):
                return
        time.sleep(0.3)
    raise TimeoutError(f"server on port {port} not ready in {timeout} s; log {log}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running(name: str, cmd: list[str], port: int, ready: list[str], log: Path, *, env: dict | None = None,
            cwd: Path | None = None, grpc_port: int | None = None) -> Iterator[Server]:
    """Starts `cmd`, waits until every `ready` path answers 200, yields the Server, then stops its group."""
    out = open(log, "wb")  # noqa: SIM115 - closed below
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd,
                         start_new_session=True, preexec_fn=die_with_parent)
    try:
        wait_ready(port, ready, p, log)
        yield Server(name, p, port, grpc_port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # workers that outlived their parent
        out.close()


# --- modelops-serve ----------------------------------------------------------------------------------

def modelops_flags(python: str, env: dict) -> set[str]:
    """The flags this build of modelops-serve accepts (from --help), to tell what it supports."""
    out = subprocess.run([python, "-m", "modelops_inference.cli", "--help"], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", out))


def modelops_serve(python: str, env: dict, onnx: Path, name: str, port: int, log: Path, *, batching: bool,
                   grpc_flag: str | None, grpc_port: int | None, extra: list[str]):
    cmd = [python, "-m", "modelops_inference.cli", "--model-uri", str(onnx), "--model-name", name,
           "--host", "127.0.0.1", "--port", str(port), "--batching", str(batching).lower(), "--log-level", "warning"]
    if grpc_flag and grpc_port:
        cmd += [grpc_flag, str(grpc_port)]
    label = f"modelops-serve batching {'on' if batching else 'off'}"
    return running(label, cmd + extra, port, ["/v2/health/ready"], log, env=env,
                   grpc_port=grpc_port if grpc_flag else None)


# --- the alternatives --------------------------------------------------------------------------------

def mlserver(python: str, onnx: Path, name: str, port: int, grpc_port: int, metrics_port: int, workdir: Path,
             log: Path, parallel_workers: int):
    """MLServer 1.7 with the custom runtime in peers/mlserver_runtime.py; debug (per-request) logging off."""
    folder = workdir / f"mlserver-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps({
        "debug": False, "host": "127.0.0.1", "http_port": port, "grpc_port": grpc_port, "metrics_port": metrics_port,
        "parallel_workers": parallel_workers,
    }))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "mlserver_runtime.OnnxRuntime", "parameters": {"uri": str(onnx)},
    }))
    mlserver_bin = str(Path(python).parent / "mlserver")
    env = {"PYTHONPATH": str(PEERS), "MLSERVER_DEBUG": "false"}
    return running(f"MLServer ({parallel_workers} parallel workers)", [mlserver_bin, "start", str(folder)], port,
                   ["/v2/health/ready", f"/v2/models/{name}/ready"], log, env=env, cwd=folder, grpc_port=grpc_port)


def kserve(python: str, onnx: Path, name: str, port: int, grpc_port: int, log: Path):
    cmd = [python, str(PEERS / "kserve_model.py"), "--model_name", name, "--model_path", str(onnx),
           "--http_port", str(port), "--grpc_port", str(grpc_port), "--enable_latency_logging", "false"]
    return running("KServe ModelServer", cmd, port, ["/v2/health/ready", f"/v2/models/{name}/ready"], log,
                   grpc_port=grpc_port)


def http_floor(python: str, answer: bytes, port: int, workdir: Path, log: Path):
    answer_file = workdir / f"floor-answer-{port}.json"
    answer_file.write_bytes(answer)
    return running("uvicorn constant", [python, str(PEERS / "http_floor.py"), str(port), str(answer_file)], port,
                   ["/"], log)


def grpc_floor(python: str, answer: bytes, port: int, workdir: Path, log: Path):
    answer_file = workdir / f"grpc-floor-answer-{port}.bin"
    answer_file.write_bytes(answer)
    return running("grpc.aio constant", [python, str(PEERS / "grpc_floor.py"), str(port), str(answer_file)], port,
                   [], log, grpc_port=port)


def mlflow_serve(bin_dir: Path, model_uri: str, tracking: str, port: int, log: Path):
    cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local", "-w", "1",
           "-h", "127.0.0.1", "-p", str(port)]
    env = {"MLFLOW_TRACKING_URI": tracking, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return running("mlflow models serve", cmd, port, ["/ping"], log, env=env)
