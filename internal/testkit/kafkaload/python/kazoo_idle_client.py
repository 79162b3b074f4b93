# An idle kazoo client for tests that move its session under it (a member
# killed, a cutover): registers watches and an ephemeral under root, prints
# "READY <session id hex>", waits for "GO" on stdin (the test has moved the
# session and changed the watched nodes meanwhile), then reports the events
# and connection states it saw. Usage: kazoo_idle_client.py host:port root
import queue
import sys

from kazoo.client import KazooClient, KazooState

states = []
events = queue.Queue()
root = sys.argv[2]
zk = KazooClient(hosts=sys.argv[1], timeout=10.0)
zk.add_listener(lambda s: states.append(s))
zk.start(timeout=30)
zk.create(root + "/d1", makepath=True)
zk.create(root + "/d2")
zk.create(root + "/eph", ephemeral=True)
record = lambda ev: events.put("%s %s" % (ev.type, ev.path))
zk.get(root + "/d1", watch=record)
zk.get(root + "/d2", watch=record)
zk.exists(root + "/new", watch=record)
zk.get_children(root, watch=record)
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
print("T ephemeral owner kept: %s" % (zk.exists(root + "/eph").ephemeralOwner == zk.client_id[0]), flush=True)
print("T suspended %d lost %d" % (states.count(KazooState.SUSPENDED), states.count(KazooState.LOST)), flush=True)
zk.stop()
zk.close()
