package workload

import _ "embed"

// CIdleClientSource is an idle Kafka-like client on the ZooKeeper C client
// (c/idle_client.c; build it with zktest.CProgram): run with host:port and
// a root path, it sets watches and an ephemeral under root, prints
// "READY 0x<session id>", waits for "GO" on stdin and reports, as "T "
// lines, the events it got and its connection-state changes.
//
//go:embed c/idle_client.c
var CIdleClientSource string
