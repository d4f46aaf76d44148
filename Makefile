# modelops — the two commands a new user needs are `make demo` and `make test` (see README).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help setup test lint bench demo demo-down
help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## install pinned Python deps, system packages and tools (idempotent)
	@bash hack/setup.sh

test: ## install and start everything the tests need, then run every test
	@bash hack/test.sh

lint: setup ## ruff
	@.venv/bin/ruff check .

bench: setup ## run benchmarks/ (tables printed, JSON under benchmarks/results/; rollout.py needs make cluster-up images)
	@for b in benchmarks/*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

demo: ## the main job: cluster, images, helm install, train, apply a ModelDeployment, predict, see a rollback
	@bash hack/demo.sh

demo-down: ## undo make demo: uninstall the release, delete the demo namespace, stop the local cluster
	@bash hack/demo-down.sh

# Each component adds its own targets here.
-include mk/*.mk
