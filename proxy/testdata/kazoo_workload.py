# Runs a workload with kazoo and prints a transcript ("T " lines) free of
# zxids, times and session ids, so a run through zkproxy can be compared
# with a run against the ensemble. Usage: kazoo_workload.py host:port root
# (the workload runs under the chroot root).
import queue
import sys

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException
from kazoo.security import make_digest_acl, OPEN_ACL_UNSAFE

host, root = sys.argv[1], sys.argv[2]
lost = []


def t(line):
    print("T " + str(line).replace(root, "<root>"), flush=True)


def attempt(f):
    try:
        return "ok %s" % (f(),)
    except KazooException as e:
        return type(e).__name__


def connect(hosts):
    zk = KazooClient(hosts=hosts, timeout=10.0)
    zk.add_listener(lambda state: lost.append(state) if state != KazooState.CONNECTED else None)
    zk.start(timeout=30)
    return zk


setup = connect(host)
t("create chroot: " + attempt(lambda: setup.create(root)))
setup.stop()
setup.close()

zk = connect(host + root)
other = connect(host + root)
events = queue.Queue()


def recorder(name):
    return lambda ev: events.put("%s %s %s" % (name, ev.type, ev.path))


def await_events(n):
    got = []
    for _ in range(n):
        try:
            got.append(events.get(timeout=20))
        except queue.Empty:
            got.append("none within 20s")
    for e in sorted(got):
        t("event " + e)


t("create /a: " + attempt(lambda: zk.create("/a", b"1")))
t("create /a again: " + attempt(lambda: zk.create("/a", b"1")))
t("get /a: " + attempt(lambda: (zk.get("/a")[0], zk.get("/a")[1].version)))
t("set /a v0: " + attempt(lambda: zk.set("/a", b"2", version=0).version))
t("set /a stale: " + attempt(lambda: zk.set("/a", b"3", version=0)))
t("exists /missing: " + attempt(lambda: zk.exists("/missing")))
t("create ephemeral: " + attempt(lambda: zk.create("/e", ephemeral=True)))
t("ephemeral owner is us: " + attempt(lambda: zk.exists("/e").ephemeralOwner == zk.client_id[0]))
for _ in range(3):
    t("create sequential: " + attempt(lambda: zk.create("/seq-", sequence=True)))
t("create ephemeral sequential: " + attempt(lambda: zk.create("/eseq-", ephemeral=True, sequence=True)))
t("children: " + attempt(lambda: sorted(zk.get_children("/"))))

tx = zk.transaction()
tx.create("/m1", b"m")
tx.check("/a", 17)
tx.delete("/nope")
t("transaction failing: " + attempt(lambda: [type(r).__name__ for r in tx.commit()]))
t("m1 after failed transaction: " + attempt(lambda: zk.exists("/m1")))
tx = zk.transaction()
tx.create("/m2", b"m")
tx.set_data("/a", b"4", version=1)
tx.check("/a", 2)
t("transaction ok: " + attempt(lambda: [r.version if hasattr(r, "version") else r for r in tx.commit()]))

zk.get("/a", watch=recorder("data"))
zk.exists("/later", watch=recorder("exist"))
zk.get_children("/", watch=recorder("child"))
other.set("/a", b"5")
other.create("/later")
await_events(3)
zk.exists("/later", watch=recorder("exist-delete"))
other.delete("/later")
await_events(1)

zk.add_auth("digest", "alice:secret")
acl = make_digest_acl("alice", "secret", all=True)
t("create /secret: " + attempt(lambda: zk.create("/secret", b"s", acl=[acl])))
t("get /secret as alice: " + attempt(lambda: zk.get("/secret")[0]))
t("get /secret as anyone: " + attempt(lambda: other.get("/secret")))
t("get_acls /secret: " + attempt(lambda: zk.get_acls("/secret")[0][0].id.scheme))
t("sync: " + attempt(lambda: zk.sync("/")))
t("delete non-empty: " + attempt(lambda: zk.delete("/")))
t("delete /m2: " + attempt(lambda: zk.delete("/m2", version=0)))
zk.stop()
zk.close()
other.stop()
other.close()
# SUSPENDED is kazoo's Disconnected; LOST comes from stop() on each handle.
t("suspended: %d" % lost.count(KazooState.SUSPENDED))
