// Package premise holds tests only: they show, against real ZooKeeper 3.8
// servers and real clients and before any proxy exists, the premise zkproxy
// rests on (issue 2, item 4): a session created on the source ensemble can be
// re-established on a destination member during the joint phase of a Yelp
// "mitosis" and again after the split, keeping its id, password, ephemerals
// and watches; and where that stops working (session timeout, lastZxidSeen).
package premise
