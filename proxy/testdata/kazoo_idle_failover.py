# A kazoo client for the failover test: registers watches and an ephemeral
# through zkproxy, prints "READY <session id hex>", waits for "GO" on stdin
# (the test killed its member and changed the watched nodes meanwhile), then
# reports the events and connection states it saw.
import queue
import sys

from kazoo.client import KazooClient, KazooState

states = []
events = queue.Queue()
zk = KazooClient(hosts=sys.argv[1], timeout=10.0)
zk.add_listener(lambda s: states.append(s))
zk.start(timeout=30)
zk.create("/kf/d1", makepath=True)
zk.create("/kf/d2")
zk.create("/kf/eph", ephemeral=True)
record = lambda ev: events.put("%s %s" % (ev.type, ev.path))
zk.get("/kf/d1", watch=record)
zk.get("/kf/d2", watch=record)
zk.exists("/kf/new", watch=record)
zk.get_children("/kf", watch=record)
print("READY %x" % zk.client_id[0], flush=True)
if sys.stdin.readline().strip() != "GO":
    sys.exit("expected GO")
got = []
for _ in range(4):
    try:
        got.append(events.get(timeout=30))
    except queue.Empty:
        got.append("none within 30s")
for e in sorted(got):
    print("T event " + e, flush=True)
print("T ephemeral owner kept: %s" % (zk.exists("/kf/eph").ephemeralOwner == zk.client_id[0]), flush=True)
print("T suspended %d lost %d" % (states.count(KazooState.SUSPENDED), states.count(KazooState.LOST)), flush=True)
zk.stop()
zk.close()
