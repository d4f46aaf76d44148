"""Export benchmark: what the parity-gated export costs and what ONNX buys at inference time.

For both trained models (breast-cancer MLP, digits CNN), trained and registered in a scratch
MLflow store, this measures

  1. export time (download, torch.onnx dynamo export, parity gate, upload), fp32 and dynamic int8
  2. the parity numbers the gate saw (max abs/rel error, top-1 agreement for int8)
  3. in-process latency of onnxruntime (the exported model) vs torch (what MLflow hands back) at
     batch 1 and batch 64, one thread each, median of many runs

then prints a table and writes benchmarks/results/export.json. The machine is shared and noisy:
compare ratios within one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "export.json"
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def median_ms(fn, x, repeats: int) -> float:
    for _ in range(max(3, repeats // 10)):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def latency(record, tracking_uri: str, repeats: int) -> dict:
    import mlflow
    import torch

    from modelops_training.parity import sample_like
    from modelops_training.runtime import runner, session

    torch.set_num_threads(1)
    onnx_path = mlflow.artifacts.download_artifacts(record.onnx_uri, tracking_uri=tracking_uri)
    ort_run = runner(session(onnx_path, threads=1))
    model_dir = mlflow.artifacts.download_artifacts(
        mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version_download_uri(
            record.name, record.version),
        tracking_uri=tracking_uri)
    model = mlflow.pytorch.load_model(model_dir)

    def torch_run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    example = np.asarray(record.input_example, dtype=np.float32)
    out = {}
    for batch in (1, 64):
        x = sample_like(example, batch, seed=batch)
        onnx_ms = median_ms(ort_run, x, repeats if batch == 1 else repeats // 4)
        torch_ms = median_ms(torch_run, x, repeats if batch == 1 else repeats // 4)
        out[f"batch{batch}"] = {"onnx_ms": round(onnx_ms, 4), "torch_ms": round(torch_ms, 4),
                                "speedup": round(torch_ms / onnx_ms, 2)}
    return out


def run(epochs: dict[str, int], repeats: int) -> dict:
    from modelops_training.export import export_model, library_versions
    from modelops_training.train import TrainConfig, train

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow/mlflow.db"
        os.chdir(tmp)  # MLflow defaults that point at the cwd stay out of the checkout
        for dataset, name in (("breast_cancer", "bench-breast-cancer"), ("digits", "bench-digits")):
            trained = train(TrainConfig(dataset, epochs=epochs[dataset], register=name, alias="champion",
                                        progress=False, tracking_uri=uri))
            for quantize in ("none", "dynamic-int8"):
                started = time.perf_counter()
                record = export_model(f"models:/{name}@champion", tracking_uri=uri, quantize=quantize, force=True)
                seconds = time.perf_counter() - started
                reuse_started = time.perf_counter()
                reused = export_model(f"models:/{name}@champion", tracking_uri=uri, quantize=quantize)
                reuse_seconds = time.perf_counter() - reuse_started
                gate = record.parity.int8 if quantize == "dynamic-int8" else record.parity
                rows.append({
                    "model": dataset, "quantize": quantize, "epochs": epochs[dataset],
                    "test_accuracy": round(trained.test_metrics["test_accuracy"], 4),
                    "export_s": round(seconds, 2), "reuse_s": round(reuse_seconds, 2), "reused": reused.reused,
                    "onnx_bytes": record.size_bytes, "parity_max_abs": gate.max_abs_error,
                    "parity_max_rel": gate.max_rel_error, "tolerance": gate.tolerance,
                    "top1_agreement": gate.top1_agreement, "parity_inputs": gate.samples,
                    "latency": latency(record, uri, repeats),
                })
                print(f"  {dataset} {quantize}: export {seconds:.1f}s", file=sys.stderr)
    return {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_1m": os.getloadavg()[0]},
        "versions": library_versions(),
        "settings": {"opset": 18, "samples": 64, "threads": 1, "repeats_batch1": repeats},
        "results": rows,
    }


def table(report: dict) -> str:
    head = ("| model | quantize | export s | reuse s | ONNX KiB | parity max abs (tol) | top-1 agree "
            "| b1 onnx ms | b1 torch ms | b64 onnx ms | b64 torch ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in report["results"]:
        b1, b64 = r["latency"]["batch1"], r["latency"]["batch64"]
        agree = f"{r['top1_agreement']:.0%}" if r["top1_agreement"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['quantize']} | {r['export_s']:.1f} | {r['reuse_s']:.2f} | "
            f"{r['onnx_bytes'] / 1024:.1f} | {r['parity_max_abs']:.2g} ({r['tolerance']:g}) | {agree} | "
            f"{b1['onnx_ms']:.3f} | {b1['torch_ms']:.3f} | {b64['onnx_ms']:.3f} | {b64['torch_ms']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few epochs and repeats (a smoke run)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    warnings.simplefilter("ignore")
    import logging

    for name in ("mlflow", "alembic", "torch", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    epochs = {"breast_cancer": 2, "digits": 1} if args.quick else {"breast_cancer": 40, "digits": 15}
    report = run(epochs, repeats=50 if args.quick else 400)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nwritten to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
