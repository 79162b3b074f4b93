// Package e2e holds zkproxy's end-to-end tests: the whole Yelp mitosis
// (docs/mitosis.md) on real ZooKeeper 3.8 servers,
// with zkproxy and its cutover controller in front and Kafka-like workloads
// (Go and Java clients, internal/testkit/kafkaload) running through it:
//
//   - TestJavaWorkloadCutover: the Java 3.8 client, as Kafka uses it, moved
//     live to the destination;
//   - TestStress / TestStressTwoProxies: tens of sessions writing
//     serial-numbered payloads through join, sync check, cutover and split,
//     read back from the destination for loss, duplication and order (long
//     when ZKPROXY_SOAK_DURATION and ZKPROXY_SOAK_CLIENTS are set);
//   - TestChaos*: a destination member killed, zkproxy restarted, a slow
//     destination, and the split attempted, each mid-cutover.
//
// Every test starts up to six ZooKeeper JVMs plus client JVMs: run them one
// at a time. All are skipped under -short.
package e2e
