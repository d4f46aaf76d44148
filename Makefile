# modelops — the two commands a new user needs are `make demo` and `make test` (see README).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help setup test lint bench demo
help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## install pinned Python deps, system packages and tools (idempotent)
	@bash hack/setup.sh

test: ## install and start everything the tests need, then run every test
	@bash hack/test.sh

lint: setup ## ruff
	@.venv/bin/ruff check .

bench: setup ## run benchmarks/ (tables printed, JSON under benchmarks/results/)
	@for b in benchmarks/*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

demo: ## the main job: train, register, export, serve and predict
	@bash hack/demo.sh

# Each component adds its own targets here.
-include mk/*.mk
