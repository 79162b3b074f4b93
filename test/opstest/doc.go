// Package opstest holds zkproxy's operability tests: the Grafana dashboard
// and Prometheus alert rules in deploy/ use only metrics zkproxy registers,
// every metric name passes the Prometheus linter, and a workload through a
// real proxy in front of a real ZooKeeper moves every metric family the way
// an operator expects. It has no non-test code.
package opstest
