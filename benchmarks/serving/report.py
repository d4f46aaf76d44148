"""What a run's measurements say: each row's ratio to its scenario's reference, the targets with
PASS/FAIL, and the printed table. Pure functions over the list of run records the benchmark writes.

A run record is a dict with the keys of `KEYS` plus, when measured (`status` "ok"), the summary of
`stats.summarise`; a run that could not be measured has `status` "unsupported" or "failed" and a
`reason`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import median

from benchmarks.serving.stats import ratio

KEYS = ("scenario", "model", "server", "protocol", "clients", "rows", "batching", "drift", "round")

SCENARIOS = {
    "one_row": "one-row requests (ratio: req/s ÷ modelops-serve JSON's)",
    "rows": "multi-row requests, CNN (ratio: rows/s ÷ modelops-serve JSON's at the same rows)",
    "batching": "dynamic batching, one-row requests (ratio: rows/s ÷ the same protocol with batching off)",
    "overload": "overload, one-row requests (ratio: admitted req/s ÷ the run with the fewest connections)",
    "drift": "drift counting, one-row MLP requests (ratio: req/s ÷ the same protocol with drift off)",
}


def find(runs: list[dict], **keys) -> dict | None:
    """The first measured run whose fields equal `keys`."""
    for r in runs:
        if r.get("status") == "ok" and all(r.get(k) == v for k, v in keys.items()):
            return r
    return None


def reference(runs: list[dict], run: dict) -> tuple[dict | None, str]:
    """The run that `run` is compared with in its scenario, and the metric compared."""
    s = run["scenario"]
    if s == "one_row":
        return find(runs, scenario=s, model=run["model"], server="modelops", protocol="json"), "req_per_s"
    if s == "rows":
        return find(runs, scenario=s, model=run["model"], server="modelops", protocol="json",
                    rows=run["rows"]), "rows_per_s"
    if s == "batching":
        return find(runs, scenario=s, model=run["model"], server=run["server"], protocol=run["protocol"],
                    batching="off"), "rows_per_s"
    if s == "drift":
        return find(runs, scenario=s, model=run["model"], server=run["server"], protocol=run["protocol"],
                    drift="off", round=run.get("round")), "req_per_s"
    if s == "overload":
        return find(runs, scenario=s, model=run["model"], server=run["server"], protocol=run["protocol"],
                    clients=min(r["clients"] for r in runs if r["scenario"] == s)), "req_per_s"
    return None, ""


def add_ratios(runs: list[dict]) -> None:
    for r in runs:
        ref, metric = reference(runs, r)
        value = ratio(r.get(metric), ref.get(metric)) if ref is not None and r.get("status") == "ok" else None
        r["ratio"] = None if value is None else round(value, 2)


# --- targets -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    verdict: str  # PASS, FAIL or N/A (not measurable in this run, e.g. unsupported by this server build)
    measured: str

    def line(self) -> str:
        return f"{self.verdict:<4}  {self.goal}: {self.measured}"


def _status(runs: list[dict], **keys) -> str:
    """Why nothing was measured for `keys`: the reason of a matching unmeasured run, or "not run"."""
    for r in runs:
        if all(r.get(k) == v for k, v in keys.items()) and r.get("status") != "ok":
            return f"{r['status']}: {r.get('reason', '')}"
    return "not run"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def target_mlserver(runs: list[dict], factor: float = 8.0) -> Target:
    goal = f"one-row MLP on one worker: modelops-serve JSON ≥ {factor:g}x MLServer's req/s, lower p99"
    ours = find(runs, scenario="one_row", model="mlp", server="modelops", protocol="json")
    theirs = [r for r in runs if r["scenario"] == "one_row" and r["model"] == "mlp" and r["protocol"] == "json"
              and r["server"].startswith("mlserver") and r.get("status") == "ok"]
    if ours is None or not theirs:
        why = _status(runs, scenario="one_row", model="mlp", protocol="json",
                      server="modelops" if ours is None else "mlserver_pw0")
        return Target("vs_mlserver", goal, "N/A", why)
    best = max(theirs, key=lambda r: r["req_per_s"])  # MLServer's best one-worker configuration
    x = ratio(ours["req_per_s"], best["req_per_s"])
    ok = x >= factor and ours["p99_ms"] < best["p99_ms"]
    return Target("vs_mlserver", goal, _verdict(ok),
                  f"{x:.1f}x ({ours['req_per_s']:,.0f} vs {best['req_per_s']:,.0f} req/s, {best['server']}); "
                  f"p99 {ours['p99_ms']:.2f} vs {best['p99_ms']:.2f} ms")


def target_binary(runs: list[dict], factor: float = 1.3) -> Target:
    goal = f"CNN: binary extension ≥ {factor:g}x JSON's rows/s (largest batch measured)"
    sizes = sorted({r["rows"] for r in runs if r["scenario"] == "rows" and r["model"] == "cnn"})
    if not sizes:
        return Target("binary_vs_json", goal, "N/A", "rows scenario not run")
    per_size = []
    for n in sizes:
        b = find(runs, scenario="rows", model="cnn", server="modelops", protocol="binary", rows=n)
        j = find(runs, scenario="rows", model="cnn", server="modelops", protocol="json", rows=n)
        x = ratio(b and b["rows_per_s"], j and j["rows_per_s"])
        per_size.append((n, x))
    n, x = per_size[-1]
    if x is None:
        return Target("binary_vs_json", goal, "N/A",
                      _status(runs, scenario="rows", model="cnn", server="modelops", protocol="binary", rows=n))
    detail = ", ".join(f"{k} rows {v:.2f}x" for k, v in per_size if v is not None)
    return Target("binary_vs_json", goal, _verdict(x >= factor), detail)


def target_batching(runs: list[dict], model: str, factor: float = 2.0) -> Target:
    clients = sorted({r["clients"] for r in runs if r["scenario"] == "batching"}) or [64]
    goal = (f"{model}: batching on ≥ {factor:g}x batching off rows/s at {'/'.join(map(str, clients))} clients, "
            "for at least one protocol")
    found = []
    for protocol in ("json", "binary", "grpc"):
        on = find(runs, scenario="batching", model=model, server="modelops", protocol=protocol, batching="on")
        off = find(runs, scenario="batching", model=model, server="modelops", protocol=protocol, batching="off")
        x = ratio(on and on["rows_per_s"], off and off["rows_per_s"])
        if x is not None:
            found.append((protocol, x))
    if not found:
        return Target(f"batching_{model}", goal, "N/A", _status(runs, scenario="batching", model=model))
    best = max(x for _, x in found)
    return Target(f"batching_{model}", goal, _verdict(best >= factor), ", ".join(f"{p} {x:.2f}x" for p, x in found))


def target_cpu(runs: list[dict], factor: float = 2.0) -> Target:
    goal = f"server CPU per one-row MLP request (JSON) within {factor:g}x the HTTP floor's"
    ours = find(runs, scenario="one_row", model="mlp", server="modelops", protocol="json")
    floor = find(runs, scenario="one_row", model="mlp", server="http_floor")
    x = ratio(ours and ours.get("server_cpu_us_per_req"), floor and floor.get("server_cpu_us_per_req"))
    if x is None:
        return Target("cpu_vs_floor", goal, "N/A", _status(runs, scenario="one_row", model="mlp",
                                                          server="modelops" if ours is None else "http_floor"))
    return Target("cpu_vs_floor", goal, _verdict(x <= factor),
                  f"{x:.2f}x ({ours['server_cpu_us_per_req']:.0f} vs {floor['server_cpu_us_per_req']:.0f} µs)")


def target_overload(runs: list[dict], within: float = 0.10, p99_ms: float = 50.0, admission: bool = True) -> Target:
    goal = (f"overload: admitted req/s at the most connections within {within:.0%} of the fewest's, "
            f"admitted p99 < {p99_ms:g} ms")
    measured = sorted((r for r in runs if r["scenario"] == "overload" and r.get("status") == "ok"),
                      key=lambda r: r["clients"])
    if len(measured) < 2:
        return Target("overload", goal, "N/A", _status(runs, scenario="overload"))
    low, high = measured[0], measured[-1]
    x = ratio(high["req_per_s"], low["req_per_s"])
    ok = x >= 1 - within and high["p99_ms"] is not None and high["p99_ms"] < p99_ms
    return Target("overload", goal, _verdict(ok),
                  f"{high['clients']} connections: {high['req_per_s']:,.0f} admitted req/s = {x:.2f}x of "
                  f"{low['clients']}'s, p99 {high['p99_ms']} ms, {high.get('rejected', 0):,} rejected (503)"
                  + ("" if admission else "; this server build has no admission control (--max-queue-depth)"))


def target_drift(runs: list[dict], overhead: float = 0.05) -> Target:
    """Judged on the median over rounds of each round's on/off req/s ratio, per protocol; the CPU per request
    ratio is shown beside it (steadier than req/s when other work shares the cores)."""
    goal = (f"one-row MLP: drift counting costs ≤ {overhead:.0%} of req/s (median of the rounds' on ÷ off "
            f"≥ {1 - overhead:g}x, every protocol)")
    found = []
    for protocol in ("json", "binary", "grpc"):
        pairs = []
        for on in runs:
            if on.get("status") == "ok" and (on["scenario"], on["model"], on["protocol"], on.get("drift")) == (
                    "drift", "mlp", protocol, "on"):
                off = find(runs, scenario="drift", model="mlp", server=on["server"], protocol=protocol, drift="off",
                           round=on.get("round"))
                x = ratio(on["req_per_s"], off and off["req_per_s"])
                cpu = ratio(on.get("server_cpu_us_per_req"), off and off.get("server_cpu_us_per_req"))
                if x is not None:
                    pairs.append((x, cpu))
        if pairs:
            cpus = [c for _, c in pairs if c is not None]
            found.append((protocol, median([x for x, _ in pairs]), median(cpus) if cpus else None, len(pairs)))
    if not found:
        return Target("drift_overhead", goal, "N/A", _status(runs, scenario="drift"))
    detail = ", ".join(f"{p} {x:.3f}x req/s" + (f" ({c:.3f}x CPU µs/req)" if c is not None else "")
                       + f" over {n} round{'s' if n > 1 else ''}" for p, x, c, n in found)
    counting = [r for r in runs if r["scenario"] == "drift" and r.get("drift_count_us_per_run") is not None]
    offs = [r["server_cpu_us_per_req"] for r in runs if r["scenario"] == "drift" and r.get("drift") == "off"
            and r["protocol"] == "json" and r.get("status") == "ok" and r.get("server_cpu_us_per_req")]
    if counting and offs:
        us, cpu = counting[0]["drift_count_us_per_run"], median(offs)
        detail += (f"; counting alone, in process: {us:.2f} µs per one-row run = {us / cpu:.1%} of the json off "
                   f"runs' {cpu:.0f} µs server CPU per request")
    return Target("drift_overhead", goal, _verdict(all(x >= 1 - overhead for _, x, _, _ in found)), detail)


def targets(runs: list[dict], admission: bool = True) -> list[Target]:
    return [target_mlserver(runs), target_binary(runs), target_batching(runs, "mlp"), target_batching(runs, "cnn"),
            target_cpu(runs), target_overload(runs, admission=admission), target_drift(runs)]


def targets_json(found: list[Target]) -> list[dict]:
    return [asdict(t) for t in found]


# --- the table ---------------------------------------------------------------------------------------

COLUMNS = ("model", "server", "protocol", "clients", "rows/req", "req/s", "rows/s", "p50 ms", "p99 ms",
           "CPU µs/req", "server cores", "client cores", "503s", "rows/run", "ratio")


def _num(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def row(r: dict, label: str, notes: list[str]) -> tuple[str, ...]:
    """One table row; an unmeasured run shows its status and the number of its reason in `notes`."""
    head = (r["model"], label, r["protocol"], str(r["clients"]), str(r["rows"]))
    if r.get("status") != "ok":
        reason = r.get("reason", "")
        if reason not in notes:
            notes.append(reason)
        return (*head, f"{r['status']} [{notes.index(reason) + 1}]", *[""] * (len(COLUMNS) - len(head) - 1))
    errors = f" ({r['errors']} errors)" if r.get("errors") else ""
    return (*head, _num(r["req_per_s"], ",.0f") + errors, _num(r["rows_per_s"], ",.0f"), _num(r["p50_ms"], ".2f"),
            _num(r["p99_ms"], ".2f"), _num(r.get("server_cpu_us_per_req"), ",.0f"),
            _num(r.get("server_cpu_util"), ".2f"), _num(r.get("client_cpu_util"), ".2f"),
            _num(r.get("rejected") or None, ","), _num(r.get("rows_per_model_run"), ".1f"),
            "" if r.get("ratio") is None else f"{r['ratio']:.2f}x")


def markdown(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(x[i]) for x in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)) + " |" for x in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def table(runs: list[dict], labels: dict[str, str], found: list[Target]) -> str:
    lines = []
    for scenario, title in SCENARIOS.items():
        chosen = [r for r in runs if r["scenario"] == scenario]
        if not chosen:
            continue
        notes: list[str] = []
        rows = [row(r, labels.get(r["server"], r["server"]) + _suffix(r), notes) for r in chosen]
        lines += ["", f"{scenario}: {title}", *markdown([COLUMNS, *rows])]
        lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    bound = [r for r in runs if (r.get("client_cpu_util") or 0) >= 0.9]
    if bound:
        lines += ["", f"note: the load generator used ≥ 0.9 cores in {len(bound)} run(s) (client cores): those "
                  "rows may measure the client, not the server"]
    loads = [r["load_1min"] for r in runs if r.get("load_1min") is not None]
    if loads:
        lines += ["", f"1-minute load average as the runs ended: {min(loads):.2f} to {max(loads):.2f} "
                  "(this benchmark itself adds up to about 2)"]
    lines += ["", "targets:"] + [t.line() for t in found]
    return "\n".join(lines).lstrip("\n")


def _suffix(r: dict) -> str:
    if r.get("batching") and r["scenario"] == "batching":
        return f", batching {r['batching']}"
    if r.get("drift") and r["scenario"] == "drift":
        return f", drift {r['drift']}" + (f", round {r['round']}" if r.get("round") else "")
    return ""
