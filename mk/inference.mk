# Inference server (inference/, Dockerfile.inference, benchmarks/inference.py).
.PHONY: inference-test inference-image inference-wheels inference-bench inference-proto

inference-test: setup ## inference server tests (the image test included: needs docker)
	@bash hack/docker.sh && .venv/bin/pytest tests/inference

inference-wheels: setup ## download the inference image's wheels into .cache/wheels/inference (offline builds)
	@bash hack/build-image.sh inference wheels

inference-image: setup ## build Dockerfile.inference on the local base image as modelops/inference:dev
	@bash hack/docker.sh && bash hack/build-image.sh inference

inference-bench: setup ## modelops-serve (JSON, binary, gRPC) vs the floors, MLServer, KServe, mlflow models serve (--quick: minutes)
	@.venv/bin/python benchmarks/inference.py

inference-proto: setup ## recompile inference/modelops_inference/grpc_predict_v2.proto into grpc_descriptor.py
	@.venv/bin/python hack/grpc_descriptor.py
