# The local single-node Kubernetes (hack/cluster/README.md). CLUSTER=kind uses kind instead;
# with KUBECONFIG set to another cluster, these targets use that cluster.
.PHONY: cluster-build cluster-up cluster-down cluster-status images cluster-test

cluster-build: ## build the cluster's binaries from the Go module proxy (cached in .cache/k8s)
	@bash hack/cluster/build.sh

cluster-up: ## start the local Kubernetes (kubeconfig: .data/cluster/kubeconfig)
	@bash hack/cluster/up.sh

cluster-down: ## stop the local Kubernetes and remove every trace of it from the host
	@bash hack/cluster/down.sh

cluster-status: ## nodes and pods of the cluster in use
	@bash hack/cluster/status.sh

images: ## build Dockerfile.inference / .operator / .training on the local base image, load into the cluster
	@bash hack/cluster/images.sh project

cluster-test: ## cluster-up, tests/cluster, cluster-down
	@bash hack/cluster/test.sh

.PHONY: rollout-bench
rollout-bench: ## apply -> Ready, failed check -> rollback, operator cost at idle, on the local cluster (needs make images)
	@.venv/bin/python benchmarks/rollout.py

.PHONY: analysis-bench
analysis-bench: ## behaviour verdicts on the local cluster: bad versions refused, honest retrains accepted, cost (needs make images)
	@.venv/bin/python benchmarks/analysis.py

.PHONY: canary-bench
canary-bench: ## canary releases through the Gateway: apply -> 100 % with the default steps, injected 5xx -> abort (needs make images)
	@.venv/bin/python benchmarks/canary.py
