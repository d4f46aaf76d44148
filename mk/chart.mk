# Helm chart (charts/modelops/), its dashboards and alerts (tests/charts/).
.PHONY: chart-lint chart-template dashboards chart-test chart-cluster-test helm3

CHART_NAMESPACE ?= modelops-system
MONITORING_APIS := --api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PodMonitor --api-versions monitoring.coreos.com/v1/PrometheusRule --api-versions monitoring.coreos.com/v1alpha1/AlertmanagerConfig

chart-lint: setup ## helm lint --strict the chart with default, all-on and namespaced values
	@.tools/bin/helm lint --strict charts/modelops
	@for f in charts/modelops/ci/*-values.yaml; do .tools/bin/helm lint --strict charts/modelops -f $$f || exit 1; done

chart-template: setup ## render the chart with default values (and the Prometheus Operator kinds) to stdout
	@.tools/bin/helm template modelops charts/modelops -n $(CHART_NAMESPACE) $(MONITORING_APIS)

dashboards: setup ## regenerate charts/modelops/dashboards/*.json from charts/modelops/dashboards/generate.py
	@.venv/bin/python charts/modelops/dashboards/generate.py

chart-test: setup ## chart tests without a cluster: lint, rendering, RBAC, dashboards, real Prometheus
	@.venv/bin/pytest tests/charts -m "not cluster"

chart-cluster-test: setup ## chart tests on the local cluster: dry-run apply, helm install/test/upgrade/uninstall
	@MODELOPS_CLUSTER_TESTS=required .venv/bin/pytest tests/charts -m cluster

HELM3_VERSION ?= v3.22.0
# Go's caches for this build (~2 GB) live and die with it: the binary is what is kept.
helm3: ## build Helm 3 ($(HELM3_VERSION)) from the Go module proxy into .tools/helm3, for the Helm 3 chart test
	@mkdir -p .tools/helm3 && export GOMODCACHE=$(CURDIR)/.cache/go-helm3/mod GOCACHE=$(CURDIR)/.cache/go-helm3/build && \
	  GOBIN=$(CURDIR)/.tools/helm3 go install helm.sh/helm/v3/cmd/helm@$(HELM3_VERSION) && go clean -cache -modcache
