# Training and export (training/, benchmarks/export.py). MLflow: $MLFLOW_TRACKING_URI, else the
# embedded store in .data/mlflow (sqlite + artifacts).
.PHONY: train export training-test training-bench verdict-calibration

EPOCHS ?=
MODEL ?= models:/breast-cancer@champion
OUT ?= .data/exports/$(subst /,_,$(subst @,_,$(subst models:/,,$(MODEL))))

train: setup ## train both models, register breast-cancer and digits, promote @champion if test_f1 improves
	@.venv/bin/modelops-train --dataset breast_cancer --register breast-cancer --promote-if-better test_f1 $(if $(EPOCHS),--epochs $(EPOCHS))
	@.venv/bin/modelops-train --dataset digits --register digits --promote-if-better test_f1 $(if $(EPOCHS),--epochs $(EPOCHS))

export: setup ## export MODEL (default models:/breast-cancer@champion) to ONNX with the parity gate, into OUT
	@.venv/bin/modelops-export $(MODEL) --out $(OUT)

training-test: setup ## training and export tests (starts its own mlflow server)
	@.venv/bin/pytest tests/training

training-bench: setup ## export benchmark: export time, parity, ONNX vs torch latency
	@.venv/bin/python benchmarks/export.py

verdict-calibration: setup ## the replay verdict's defaults against 20 honest retrains and 3 bad versions per dataset (~6 min)
	@.venv/bin/python benchmarks/verdict_calibration.py
