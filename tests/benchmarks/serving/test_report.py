from benchmarks.serving import report


def run(scenario="one_row", model="mlp", server="modelops", protocol="json", clients=32, rows=1, batching=None,
        status="ok", **metrics):
    return {"scenario": scenario, "model": model, "server": server, "protocol": protocol, "clients": clients,
            "rows": rows, "batching": batching, "status": status, **metrics}


def measured(req_per_s, p99_ms=5.0, rows=1, **kw):
    return {"req_per_s": req_per_s, "rows_per_s": req_per_s * rows, "p99_ms": p99_ms, "p50_ms": p99_ms / 2, **kw}


def verdicts(runs):
    return {t.name: t.verdict for t in report.targets(runs)}


def test_modelops_passes_against_mlserver_only_when_faster_by_the_factor_and_with_a_lower_p99():
    ours = run(**measured(9000, p99_ms=4))
    best = run(server="mlserver_pw0", **measured(1000, p99_ms=30))
    slower = run(server="mlserver_pw1", **measured(300, p99_ms=90))
    assert report.target_mlserver([ours, best, slower]).verdict == "PASS"
    assert report.target_mlserver([ours, run(server="mlserver_pw0", **measured(1200, p99_ms=30))]).verdict == "FAIL"
    assert report.target_mlserver([ours, run(server="mlserver_pw0", **measured(1000, p99_ms=3))]).verdict == "FAIL"


def test_a_target_whose_runs_were_unsupported_is_not_applicable_and_says_why():
    runs = [run(scenario="rows", model="cnn", rows=256, **measured(10, rows=256)),
            run(scenario="rows", model="cnn", rows=256, protocol="binary", status="unsupported",
                reason="unsupported by this server build: 400")]
    t = report.target_binary(runs)
    assert t.verdict == "N/A" and "unsupported by this server build" in t.measured


def test_binary_is_judged_at_the_largest_batch():
    runs = [run(scenario="rows", model="cnn", rows=n, protocol=p, **measured(v, rows=n))
            for n, p, v in [(16, "json", 100), (16, "binary", 100), (256, "json", 10), (256, "binary", 14)]]
    t = report.target_binary(runs)
    assert t.verdict == "PASS" and "256 rows 1.40x" in t.measured


def test_batching_passes_when_any_protocol_doubles_its_rows_per_second():
    runs = [run(scenario="batching", protocol=p, batching=b, **measured(v))
            for p, b, v in [("json", "on", 150), ("json", "off", 100), ("grpc", "on", 250), ("grpc", "off", 100)]]
    assert report.target_batching(runs, "mlp").verdict == "PASS"
    assert report.target_batching(runs[:2], "mlp").verdict == "FAIL"
    assert report.target_batching(runs, "cnn").verdict == "N/A"


def test_cpu_per_request_is_compared_with_the_http_floor():
    floor = run(server="http_floor", **measured(20000, server_cpu_us_per_req=40))
    assert report.target_cpu([run(**measured(9000, server_cpu_us_per_req=80)), floor]).verdict == "PASS"
    assert report.target_cpu([run(**measured(9000, server_cpu_us_per_req=81)), floor]).verdict == "FAIL"


def test_overload_needs_the_admitted_throughput_kept_and_a_short_admitted_p99():
    base = run(scenario="overload", clients=32, **measured(10000))
    kept = run(scenario="overload", clients=1000, rejected=500, **measured(9100, p99_ms=30))
    collapsed = run(scenario="overload", clients=1000, **measured(8000, p99_ms=30))
    slow = run(scenario="overload", clients=1000, **measured(9500, p99_ms=120))
    assert report.target_overload([base, kept]).verdict == "PASS"
    assert report.target_overload([base, collapsed]).verdict == "FAIL"
    assert report.target_overload([base, slow]).verdict == "FAIL"
    assert report.target_overload([base]).verdict == "N/A"


def test_drift_counting_is_judged_on_the_median_round_of_each_protocol():
    runs = [run(scenario="drift", protocol=p, drift=d, round=r, **measured(v, server_cpu_us_per_req=c))
            for p, r, d, v, c in [("json", 1, "off", 1000, 100), ("json", 1, "on", 960, 102),
                                  ("json", 2, "off", 1000, 100), ("json", 2, "on", 800, 104),
                                  ("json", 3, "off", 900, 100), ("json", 3, "on", 990, 101),
                                  ("grpc", 1, "off", 1000, 100), ("grpc", 1, "on", 951, 103)]]
    t = report.target_drift(runs)
    assert t.verdict == "PASS"
    assert t.measured == ("json 0.960x req/s (1.020x CPU µs/req) over 3 rounds, "
                          "grpc 0.951x req/s (1.030x CPU µs/req) over 1 round")
    runs[1]["drift_count_us_per_run"] = 2.0
    assert report.target_drift(runs).measured.endswith(
        "; counting alone, in process: 2.00 µs per one-row run = 2.0% of the json off runs' 100 µs server CPU per "
        "request")
    slow = run(scenario="drift", protocol="grpc", drift="on", round=1, **measured(940))
    assert report.target_drift([*runs[:7], slow]).verdict == "FAIL"
    assert report.target_drift(runs[:1]).verdict == "N/A"
    report.add_ratios(runs)
    assert [r["ratio"] for r in runs] == [1.0, 0.96, 1.0, 0.8, 1.0, 1.1, 1.0, 0.95]


def test_ratios_divide_by_the_scenario_reference():
    runs = [run(**measured(1000)), run(server="mlserver_pw0", **measured(250)),
            run(scenario="batching", batching="on", **measured(300)),
            run(scenario="batching", batching="off", **measured(200)),
            run(protocol="grpc", status="unsupported", reason="no")]
    report.add_ratios(runs)
    assert [r["ratio"] for r in runs] == [1.0, 0.25, 1.5, 1.0, None]


def test_the_table_numbers_each_reason_once_per_scenario():
    runs = [run(**measured(1000)), run(protocol="binary", status="unsupported", reason="not in this build"),
            run(protocol="grpc", status="unsupported", reason="not in this build")]
    text = report.table(runs, {"modelops": "modelops-serve"}, report.targets(runs))
    assert text.count("[1] not in this build") == 1 and text.count("unsupported [1]") == 2

