"""modelops inference server: one ONNX model behind the Open Inference Protocol v2 (and KServe v1).

Modules, one concern each: `config` (flags and MODELOPS_* environment), `protocol` (v2/v1 request
validation and response bodies), `errors` (the one error table), `runtime` (fetch, verify, open and
warm up the onnxruntime session), `batching` (dynamic batching and the model thread), `metrics`
(Prometheus), `logging` (JSON logs), `http` (uvicorn protocol tweak), `server` (ASGI app, lifespan,
graceful shutdown) and `cli` (`modelops-serve`).
"""
