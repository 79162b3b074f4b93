# Drives kazoo (python3-kazoo 2.8) through the opcodes it can send, against
# the server address in sys.argv[1] (jute's capturing relay). Used by jute's
# TestCaptureGolden; see README.md in this directory.
import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, KazooException
from kazoo.security import make_digest_acl, CREATOR_ALL_ACL, OPEN_ACL_UNSAFE

# read_only=True: the ConnectRequest carries readOnly=1.
zk = KazooClient(hosts=sys.argv[1], timeout=4.0, read_only=True,
                 auth_data=[("digest", "bob:secret")])
zk.start(timeout=60)

zk.create("/k", b"root")
zk.create("/k/c2", b"", include_data=True)            # create2
zk.create("/k/seq-", b"s", sequence=True, ephemeral=True)
# CREATOR_ALL_ACL is ("auth", ""): kazoo writes the empty id as a null string.
zk.create("/k/secure", b"s", acl=CREATOR_ALL_ACL)
try:
    zk.create("/k", b"")
except NodeExistsError:
    pass
zk.exists("/k", watch=lambda e: None)
zk.exists("/k/missing", watch=lambda e: None)
zk.get("/k", watch=lambda e: None)
zk.get_children("/k", watch=lambda e: None)
zk.get_children("/k", include_data=True)              # getChildren2
try:
    zk.get("/k/missing")
except NoNodeError:
    pass
zk.get_acls("/k")
zk.set_acls("/k", OPEN_ACL_UNSAFE + [make_digest_acl("bob", "secret", all=True)])
zk.add_auth("digest", "carol:secret")
zk.set("/k", b"changed")                              # fires the watches
zk.sync("/k")

t = zk.transaction()
t.create("/k/t", b"x")
t.set_data("/k/t", b"y")
t.check("/k/t", 1)
t.delete("/k/t")
t.commit()

t = zk.transaction()
t.create("/k/ok", b"")
t.check("/k", 99)
t.create("/k/never", b"")
results = t.commit()
assert isinstance(results[1], BadVersionError), results

# kazoo writes null for the server lists it is not given; standalone servers
# refuse reconfig, but the request is still captured.
try:
    zk.reconfig(joining=None, leaving="2", new_members=None)
except KazooException as e:
    print("reconfig:", type(e).__name__)

zk.delete("/k/c2")
time.sleep(3)                                         # idle: pings
zk.stop()
zk.close()
print("DONE")
