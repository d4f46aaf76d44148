"""The benchmark's own tools, made on first use: the peers' virtual environments (MLServer, KServe, the
Python load generator) and the Go load generator's binary.

MLServer, KServe and modelops pin different versions of the same libraries (fastapi, starlette,
protobuf, grpcio), so each gets its own venv, installed from a fully pinned file under
`requirements/`. The Go load generator is built from `loadgen_go/` (go.sum pins every module). All of
it lives in the main checkout's git-ignored `.cache/bench-venvs/`, shared by every worktree and kept
across runs; each is rebuilt only when what it is built from changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements"
GO_SOURCE = HERE / "loadgen_go"
PEERS = ("mlserver", "kserve", "loadgen")


def cache_root(repo: Path) -> Path:
    """`.cache/bench-venvs` of the main checkout (a worktree's git common dir is the main `.git`),
    or `$MODELOPS_BENCH_VENVS` when set."""
    if os.environ.get("MODELOPS_BENCH_VENVS"):
        return Path(os.environ["MODELOPS_BENCH_VENVS"])
    try:
        common = subprocess.run(["git", "-C", str(repo), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                capture_output=True, text=True, check=True).stdout.strip()
        main = Path(common).parent
    except (OSError, subprocess.CalledProcessError):
        main = repo
    return main / ".cache" / "bench-venvs"


def _stamp(requirements: Path) -> str:
    """What a venv was built from: the pinned file's content and the interpreter's version."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    return f"{digest} python {sys.version_info.major}.{sys.version_info.minor}\n"


def ensure(peer: str, repo: Path) -> Path:
    """The python of `peer`'s venv, creating or rebuilding it (printing progress) when missing or stale."""
    requirements = REQUIREMENTS / f"{peer}.txt"
    venv = cache_root(repo) / peer
    python = venv / "bin" / "python"
    stamp_file = venv / ".modelops-stamp"
    stamp = _stamp(requirements)
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    print(f"creating the {peer} venv in {venv} from {requirements.relative_to(repo)} (once; a few minutes)",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    subprocess.run([*pip, "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "--no-deps", "-r", str(requirements)], check=True, stdout=sys.stderr)
    subprocess.run([str(python), "-m", "pip", "check"], check=True, stdout=sys.stderr)
    stamp_file.write_text(stamp)  # last: a venv interrupted halfway is rebuilt next time
    print(f"  {peer} venv ready in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return python


def go_loadgen(repo: Path) -> Path | None:
    """The Go load generator's binary, built when missing or stale; None without a Go toolchain."""
    go = shutil.which("go")
    if go is None:
        return None
    sources = sorted(p for p in GO_SOURCE.iterdir() if p.suffix in (".go", ".mod", ".sum"))
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sources)).hexdigest()[:16]
    folder = cache_root(repo) / "loadgen-go"
    binary, stamp_file = folder / "loadgen", folder / ".modelops-stamp"
    if binary.exists() and stamp_file.exists() and stamp_file.read_text() == digest:
        return binary
    print(f"building the Go load generator into {binary} (once; downloads its modules)", file=sys.stderr, flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([go, "build", "-trimpath", "-o", str(binary), "."], cwd=GO_SOURCE, check=True,
                   env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"})
    stamp_file.write_text(digest)
    return binary


def main() -> None:
    """`python -m benchmarks.serving.tools [PEER...]`: make the venvs and the Go load generator ahead of a run."""
    repo = Path(__file__).resolve().parents[2]
    for peer in sys.argv[1:] or (*PEERS, "loadgen-go"):
        print(go_loadgen(repo) if peer == "loadgen-go" else ensure(peer, repo))


if __name__ == "__main__":
    main()
