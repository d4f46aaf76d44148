"""modelops inference server: one ONNX model behind the Open Inference Protocol v2 over HTTP and gRPC
(and KServe v1).

Modules, one concern each: `config` (flags and MODELOPS_* environment), `protocol` (v2/v1 request
validation and response bodies, the binary tensor data extension, the checks gRPC shares), `tensors`
(every v2 datatype in JSON and raw bytes), `grpc_protocol` (v2 gRPC messages to and from arrays),
`grpc_descriptor` (the compiled grpc_predict_v2.proto), `errors` (the one error table), `runtime`
(fetch, verify, open and warm up the onnxruntime session), `batching` (dynamic batching and the model
thread), `admission` (the queue-depth limit every front end shares), `metrics` (Prometheus),
`predictions` (the model's answers counted by top-1 class and score, per model run), `drift` (its
inputs counted per bin of the training reference, per model run), `logging`
(JSON logs), `http` (uvicorn protocol tweak), `server` (ASGI app, lifespan, graceful shutdown),
`grpc_server` (the gRPC and health services on the same loop and runner), `sample` (the bounded record
of recent inputs the operator replays), `sample_server` (its own token-guarded port), `faults`
(`--fault-error-rate`, test only) and `cli` (`modelops-serve`).
"""

import os

# MLflow's usage telemetry is off unless the user turns it on (MLFLOW_DISABLE_TELEMETRY=false): an
# offline product phones nowhere, and MLflow 3's telemetry thread sets and removes an environment
# variable that races every thread reading os.environ (a KeyError inside `requests`). Set here, before
# any module of this package imports mlflow, which reads the setting once at import.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
