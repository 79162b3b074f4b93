// Package zktest runs real ZooKeeper 3.8 servers and real clients for zkproxy's
// integration tests: standalone servers, N-node ensembles and the Yelp "mitosis"
// procedure (joint ensemble, firewall split, restarts), each on loopback
// addresses reserved for the calling test so parallel test processes never
// collide.
//
// Everything a helper starts is tied to the test: JVMs are killed and iptables
// rules removed in t.Cleanup (also when the test fails), server logs are
// attached to the test output when the test fails, and every JVM is started with
// PR_SET_PDEATHSIG so it dies with the test process even if cleanup never runs.
//
// Integration helpers skip the test under -short (see RequireIntegration), so
// `go test -short ./...` starts no ZooKeeper.
package zktest
