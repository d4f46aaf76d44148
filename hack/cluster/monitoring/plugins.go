// Package plugins registers the service discoveries of this build of Prometheus (hack/cluster/monitoring.sh):
// Kubernetes, which every config the Prometheus Operator generates from ServiceMonitors and PodMonitors
// uses, besides file and http (plugins/minimum.go). The other 22 (AWS, Azure, GCE, Consul, ...) are about
// half of Prometheus's code and only matter outside this local cluster.
package plugins

import _ "github.com/prometheus/prometheus/discovery/kubernetes" // Register kubernetes plugin.
