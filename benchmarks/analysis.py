"""Behaviour-verdict benchmark (issue 15): bad versions refused before any user sees them, honest
retrains accepted, and what the verdicts cost on apply -> Ready.

On the real local cluster (images loaded), with a real `mlflow server` reachable from the pods and the
operator as a host process watching only the benchmark's namespace (benchmarks/rollout.py's helpers):

  1. bad versions: fully trained breast-cancer MLPs that export and pass their own parity and smoke
     checks: `--sabotage constant`, `--sabotage flip=0.2` and an honest model trained for 1 epoch.
     Each is rolled out over a Ready good version while a client sends a request through the Service
     every 50 ms, twice: with the default analysis (the registry gate refuses it at its logged
     metrics, before export) and with the registry gate off (the paired replay alone must refuse it).
     Recorded: the phase, the verdict and its reason, answers from the bad version (target 0), failed
     requests, and the verdict's delay: for a replay, status.analysis.decidedAt minus the candidate
     pod's ContainersReady transition (both 1 s resolution; target <= 10 s); for the registry gate,
     decidedAt minus the attempt's start.
  2. honest retrains: --honest versions (seeds 1..N, the same data and epochs as the good one) rolled
     out one after another over the one before, default analysis; false rejects (target <= 1 of 20).
  3. cost: the same pair of versions swapped back and forth, analysis on and off alternately;
     attempt start -> Ready medians side by side (target: on - off <= 3 s).

Prints one table and writes benchmarks/results/analysis.json.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.rollout import (  # noqa: E402  (needs ROOT on sys.path)
    GROUP,
    PLURAL,
    VERSION,
    Load,
    Watcher,
    api_clients,
    create_namespace,
    environment,
    kubectl,
    log,
    pod_reachable_registry,
    quiet_libraries,
    run_bench,
    settled_at,
    start_operator,
    table,
    train_versions,
    wait_quiet,
)

RESULTS = ROOT / "benchmarks" / "results" / "analysis.json"
MODEL = "bench-verdicts"
TARGET_VERDICT_S = 10.0
TARGET_FALSE_REJECTS = 1  # of 20
TARGET_COST_S = 3.0
BAD = (("constant", {"sabotage": "constant"}), ("flip=0.2", {"sabotage": "flip=0.2"}), ("1 epoch", {"epochs": 1}))


def manifest(name: str, version: str, analysis: dict) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"name": MODEL, "version": version}, "serving": {"imagePullPolicy": "Never"},
                     "analysis": analysis}}


def epoch(rfc3339: str | None) -> float | None:
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ")) if rfc3339 else None


def roll(custom, watcher: Watcher, namespace: str, name: str, version: str, analysis: dict, timeout: float = 300):
    """Apply (or re-point) `name` at `version`; the settled object and when the client saw it."""
    body = manifest(name, version, analysis)
    t0 = time.time()
    try:
        obj = custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": body["spec"]})
    except Exception:  # noqa: BLE001 - not there yet
        obj = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    seen, obj = watcher.wait_for(name, settled_at(obj["metadata"]["generation"]), t0, timeout, "a settled phase")
    return t0, seen, obj


def candidate_ready_at(core, namespace: str, name: str, version: str) -> float | None:
    """When the first pod of `version` had its containers ready (it then waits at the readiness gate)."""
    times = []
    for pod in core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={name}").items:
        if (pod.metadata.annotations or {}).get("modelops.io/model-version") != version:
            continue
        for c in pod.status.conditions or []:
            if c.type == "ContainersReady" and c.status == "True":
                times.append(c.last_transition_time.timestamp())
    return min(times) if times else None


def traffic(url: str, name: str, rows: int = 120) -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data.astype("float32")
    with httpx.Client(timeout=10) as client:
        for row in data[:rows]:
            body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": row.tolist()}]}
            client.post(f"{url}/v2/models/{name}/infer", json=body)


def service_url(core, namespace: str, name: str) -> str:
    return f"http://{core.read_namespaced_service(name, namespace).spec.cluster_ip}:80"


def bad_versions(custom, core, watcher, namespace, good: str, bad: dict[str, str]) -> list[dict]:
    from sklearn.datasets import load_breast_cancer

    rows = load_breast_cancer().data[0].astype("float32").tolist()
    out = []
    for label, version in bad.items():
        for gate, analysis in (("registry + replay", {}), ("replay only", {"registry": {"enabled": False}})):
            name = f"bad-{len(out)}"
            _, _, obj = roll(custom, watcher, namespace, name, good, analysis)
            assert obj["status"]["phase"] == "Ready", obj["status"]
            url = service_url(core, namespace, name)
            traffic(url, name)
            with Load(url, name, rows, broken=version) as load:
                _, _, obj = roll(custom, watcher, namespace, name, version, analysis)
            st = obj["status"]
            a = st.get("analysis") or {}
            decided = epoch(a.get("decidedAt"))
            if "replay" in a:
                since = candidate_ready_at(core, namespace, name, version)
            else:
                since = (st.get("attempt") or {}).get("startedAt")
            row = {"version": label, "gate": gate, "phase": st["phase"], "verdict": a.get("verdict"),
                   "reason": a.get("reason"), "message": a.get("message"),
                   # decidedAt has 1 s resolution: a verdict within the attempt's first second reads as 0
                   "verdict_after_s": round(max(0.0, decided - since), 1) if decided and since else None,
                   "bad_answers": load.broken_answers, "failed": len(load.failures), "sent": load.sent,
                   "evidence": a.get("replay") or a.get("registry")}
            log(f"  {label} ({gate}): {row['phase']} {row['verdict']} {row['reason']} "
                f"after {row['verdict_after_s']} s, {row['bad_answers']} bad answers")
            out.append(row)
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return out


def honest_chain(custom, core, watcher, namespace, good: str, honest: list[str]) -> list[dict]:
    name = "honest"
    _, _, obj = roll(custom, watcher, namespace, name, good, {})
    traffic(service_url(core, namespace, name), name)
    out = []
    for version in honest:
        _, _, obj = roll(custom, watcher, namespace, name, version, {})
        st = obj["status"]
        a = st.get("analysis") or {}
        out.append({"version": version, "phase": st["phase"], "verdict": a.get("verdict"), "reason": a.get("reason"),
                    "compared_with": a.get("comparedWith"), "flip_rate": (a.get("replay") or {}).get("flipRate"),
                    "score_psi": (a.get("replay") or {}).get("scorePSI"),
                    "mean_score_delta": (a.get("replay") or {}).get("meanScoreDelta")})
        log(f"  honest v{version}: {st['phase']} {a.get('verdict')} {a.get('reason')}")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return out


def cost(custom, core, watcher, namespace, pair: tuple[str, str], runs: int) -> list[dict]:
    name = "cost"
    roll(custom, watcher, namespace, name, pair[0], {})
    traffic(service_url(core, namespace, name), name)
    out = []
    for i in range(2 * runs):
        on = i % 2 == 0
        version = pair[(i + 1) % 2]
        _, seen, obj = roll(custom, watcher, namespace, name, version, {} if on else {"enabled": False})
        st = obj["status"]
        out.append({"analysis": "on" if on else "off", "version": version, "phase": st["phase"],
                    "start_to_ready_s": round(seen - st["attempt"]["startedAt"], 2)})
        log(f"  analysis {'on' if on else 'off'}: v{version} {st['phase']} in {out[-1]['start_to_ready_s']} s")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return out


def summarize(report: dict) -> list[dict]:
    rows = []
    for r in report["bad"]:
        ok = r["phase"] == "RolledBack" and r["bad_answers"] == 0 and r["failed"] == 0
        timely = r["verdict_after_s"] is not None and r["verdict_after_s"] <= TARGET_VERDICT_S
        rows.append({"measurement": f"bad: {r['version']} ({r['gate']})", "runs": 1,
                     "result": f"{r['phase']} {r['reason']}, verdict after {r['verdict_after_s']} s, "
                               f"{r['bad_answers']} answers by it, {r['failed']} failed of {r['sent']}",
                     "target": f"refused, 0 answers, verdict <= {TARGET_VERDICT_S:g} s",
                     "verdict": "PASS" if ok and timely else "MISS"})
    honest = report["honest"]
    rejects = [h for h in honest if h["phase"] != "Ready"]
    flips = [h["flip_rate"] for h in honest if h["flip_rate"] is not None]
    spread = f" (flip rate median {statistics.median(flips):.3f}, max {max(flips):.3f})" if flips else ""
    rows.append({"measurement": "honest retrains accepted", "runs": len(honest),
                 "result": f"{len(honest) - len(rejects)} of {len(honest)} Ready{spread}",
                 "target": f"<= {TARGET_FALSE_REJECTS} false reject of 20",
                 "verdict": "PASS" if len(rejects) <= TARGET_FALSE_REJECTS * max(1, len(honest)) / 20 else "MISS"})
    on = [c["start_to_ready_s"] for c in report["cost"] if c["analysis"] == "on" and c["phase"] == "Ready"]
    off = [c["start_to_ready_s"] for c in report["cost"] if c["analysis"] == "off" and c["phase"] == "Ready"]
    if on and off:
        extra = statistics.median(on) - statistics.median(off)
        rows.append({"measurement": "attempt start -> Ready, analysis on vs off", "runs": len(on) + len(off),
                     "result": f"{statistics.median(on):.1f} s vs {statistics.median(off):.1f} s (+{extra:.1f} s, "
                               f"{statistics.median(on) / statistics.median(off):.2f}x)",
                     "target": f"+ <= {TARGET_COST_S:g} s", "verdict": "PASS" if extra <= TARGET_COST_S else "MISS"})
    return rows


def bench(args, report: dict, stack: contextlib.ExitStack, tmp: Path) -> None:
    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    report["environment"] = environment()
    report["quiet"] = wait_quiet(args.quiet_wait)
    node = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    registry = stack.enter_context(pod_reachable_registry(tmp, node_ip))
    started = time.monotonic()
    good = train_versions(registry, "breast_cancer", MODEL, 1, None)[0]
    bad = {}
    for i, (label, how) in enumerate(BAD):
        bad[label] = train_versions(registry, "breast_cancer", MODEL, 1, how.get("epochs"), first_seed=100 + i,
                                    sabotage=how.get("sabotage"))[0]
    honest = train_versions(registry, "breast_cancer", MODEL, args.honest, None, first_seed=1)
    report["training"] = {"seconds": round(time.monotonic() - started, 1), "good": good, "bad": bad, "honest": honest}
    log(f"trained good v{good}, bad {bad}, honest {honest}")
    namespace = create_namespace("bench-verdicts", stack)
    start_operator(registry, namespace, tmp / "operator", stack, 30)
    watcher = Watcher(namespace)
    stack.callback(watcher.stop)
    custom, core = api_clients()
    log("1. bad versions")
    report["bad"] = bad_versions(custom, core, watcher, namespace, good, bad)
    log("2. honest retrains")
    report["honest"] = honest_chain(custom, core, watcher, namespace, good, honest)
    log("3. cost on apply -> Ready")
    report["cost"] = cost(custom, core, watcher, namespace, (good, honest[0]), args.cost_runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--honest", type=int, default=20, help="honest retrains (seeds 1..N)")
    p.add_argument("--cost-runs", type=int, default=3, help="rollouts with analysis on, and as many off")
    p.add_argument("--quiet-wait", type=float, default=600)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    quiet_libraries()
    report: dict = {"settings": {k: v for k, v in vars(args).items() if k != "out"},
                    "targets": {"verdict_after_candidate_ready_s": TARGET_VERDICT_S,
                                "false_rejects_of_20": TARGET_FALSE_REJECTS, "extra_apply_to_ready_s": TARGET_COST_S}}
    run_bench(bench, args, report, "bench-verdicts-")
    rows = summarize(report)
    text = table(rows)
    report["summary"], report["table"] = rows, text.splitlines()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
