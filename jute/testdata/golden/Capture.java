// Capture drives the ZooKeeper 3.8 Java client through every opcode it can
// send, against the server address given as args[0] (jute's capturing relay).
// It prints "DROP" and waits for a reconnect twice: once with only standard
// watches registered (the client re-registers them with setWatches, op 101)
// and once with persistent watches too (setWatches2, op 105). Used by
// jute's TestCaptureGolden; see README.md in this directory.
import java.util.*;
import java.util.concurrent.*;
import org.apache.zookeeper.*;
import org.apache.zookeeper.admin.ZooKeeperAdmin;
import org.apache.zookeeper.client.ZKClientConfig;
import org.apache.zookeeper.data.*;

public class Capture {
    static volatile CountDownLatch connected = new CountDownLatch(1);
    static volatile boolean sawDisconnect = false;

    static Watcher watcher = event -> {
        if (event.getType() == Watcher.Event.EventType.None) {
            if (event.getState() == Watcher.Event.KeeperState.Disconnected) {
                sawDisconnect = true;
            }
            if (event.getState() == Watcher.Event.KeeperState.SyncConnected
                    || event.getState() == Watcher.Event.KeeperState.ConnectedReadOnly) {
                connected.countDown();
            }
        }
    };

    static void reconnect() throws Exception {
        sawDisconnect = false;
        connected = new CountDownLatch(1);
        System.out.println("DROP");
        System.out.flush();
        if (!connected.await(60, TimeUnit.SECONDS)) {
            throw new RuntimeException("no reconnect");
        }
    }

    static void expect(KeeperException.Code want, Callable<?> c) throws Exception {
        try {
            c.call();
        } catch (KeeperException e) {
            if (e.code() != want) {
                throw e;
            }
            return;
        }
        if (want != KeeperException.Code.OK) {
            throw new RuntimeException("expected " + want);
        }
    }

    public static void main(String[] args) throws Exception {
        String addr = args[0];
        ZKClientConfig plain = new ZKClientConfig();
        plain.setProperty(ZKClientConfig.ENABLE_CLIENT_SASL_KEY, "false");
        // canBeReadOnly=true: the ConnectRequest carries readOnly=1.
        ZooKeeperAdmin zk = new ZooKeeperAdmin(addr, 4000, watcher, true, plain);
        if (!connected.await(60, TimeUnit.SECONDS)) {
            throw new RuntimeException("no connection");
        }
        List<ACL> open = ZooDefs.Ids.OPEN_ACL_UNSAFE;
        zk.addAuthInfo("digest", "alice:secret".getBytes());
        zk.create("/g", "root".getBytes(), open, CreateMode.PERSISTENT);
        Stat st = new Stat();
        zk.create("/g/c2", null, open, CreateMode.PERSISTENT_SEQUENTIAL, st);
        zk.create("/g/container", new byte[0], open, CreateMode.CONTAINER);
        zk.create("/g/ttl", "t".getBytes(), open, CreateMode.PERSISTENT_WITH_TTL, st, 60000);
        zk.create("/g/eph", "e".getBytes(), ZooDefs.Ids.CREATOR_ALL_ACL, CreateMode.EPHEMERAL);
        expect(KeeperException.Code.NODEEXISTS, () -> zk.create("/g", null, open, CreateMode.PERSISTENT));
        zk.exists("/g", true);
        zk.exists("/g/missing", true);
        zk.getData("/g", true, st);
        zk.getChildren("/g", true);
        zk.getChildren("/g", false, st);
        zk.getACL("/g/eph", st);
        zk.setACL("/g/eph", ZooDefs.Ids.CREATOR_ALL_ACL, -1);
        expect(KeeperException.Code.NONODE, () -> zk.getData("/g/missing", false, null));
        CountDownLatch synced = new CountDownLatch(1);
        zk.sync("/g", (rc, path, ctx) -> synced.countDown(), null);
        synced.await();

        // Standard watches only: the reconnect re-registers them with
        // setWatches (op 101).
        reconnect();

        zk.setData("/g", "changed".getBytes(), -1);
        zk.create("/g/child", "c".getBytes(), open, CreateMode.PERSISTENT);

        // multi: one that succeeds with every write sub-op, one with mixed
        // results (a failing check, then a create reported as
        // RUNTIMEINCONSISTENCY).
        zk.multi(Arrays.asList(
            Op.create("/g/m", "m".getBytes(), open, CreateMode.PERSISTENT),
            Op.create("/g/m2", null, open, CreateMode.PERSISTENT, 0),
            Op.create("/g/mttl", null, open, CreateMode.PERSISTENT_WITH_TTL, 5000),
            Op.create("/g/mcont", null, open, CreateMode.CONTAINER),
            Op.setData("/g/m", "m2".getBytes(), 0),
            Op.check("/g/m", 1),
            Op.delete("/g/m", 1)));
        try {
            zk.multi(Arrays.asList(
                Op.create("/g/ok", null, open, CreateMode.PERSISTENT),
                Op.check("/g", 42),
                Op.create("/g/never", null, open, CreateMode.PERSISTENT)));
            throw new RuntimeException("multi should fail");
        } catch (KeeperException e) {
            if (e.code() != KeeperException.Code.BADVERSION) {
                throw e;
            }
        }
        // All read ops: the client sends multiRead (op 22); one result is an
        // error.
        zk.multi(Arrays.asList(Op.getData("/g"), Op.getChildren("/g"), Op.getData("/g/missing")));

        zk.getEphemerals();
        zk.getEphemerals("/g");
        zk.getAllChildrenNumber("/g");
        zk.whoAmI();

        zk.addWatch("/g", AddWatchMode.PERSISTENT);
        zk.addWatch("/g/r", AddWatchMode.PERSISTENT_RECURSIVE);
        zk.exists("/g/child", true);
        zk.getChildren("/", true);

        // Persistent watches registered: the reconnect uses setWatches2.
        reconnect();

        zk.create("/g/r", null, open, CreateMode.PERSISTENT);
        zk.setData("/g/child", "x".getBytes(), -1);

        // removeWatches(watcher) sends checkWatches (op 17);
        // removeAllWatches sends removeWatches (op 18).
        Watcher w = e -> { };
        zk.getData("/g/child", w, st);
        zk.removeWatches("/g/child", w, Watcher.WatcherType.Data, false);
        zk.removeAllWatches("/g", Watcher.WatcherType.Any, false);
        expect(KeeperException.Code.NOWATCHER, () -> {
            zk.removeAllWatches("/g/none", Watcher.WatcherType.Any, false);
            return null;
        });

        // Standalone servers refuse reconfig; the request is still captured.
        try {
            zk.reconfigure("server.2=127.0.0.1:2888:3888;2181", null, null, -1, new Stat());
        } catch (KeeperException e) {
            System.out.println("reconfig: " + e.code());
        }

        zk.delete("/g/child", -1);
        // Stay idle long enough for pings (session timeout 4 s: ping every
        // 4000/3 ms of idleness).
        Thread.sleep(3000);
        zk.close();

        // A second handle authenticating with SASL DIGEST-MD5 (op 102), if the
        // JAAS file for the "SaslClient" section was given.
        if (args.length > 1) {
            System.setProperty("java.security.auth.login.config", args[1]);
            ZKClientConfig sasl = new ZKClientConfig();
            sasl.setProperty(ZKClientConfig.LOGIN_CONTEXT_NAME_KEY, "SaslClient");
            connected = new CountDownLatch(1);
            CountDownLatch authed = new CountDownLatch(1);
            ZooKeeper zs = new ZooKeeper(addr, 4000, event -> {
                if (event.getState() == Watcher.Event.KeeperState.SaslAuthenticated) {
                    authed.countDown();
                }
            }, sasl);
            if (!authed.await(60, TimeUnit.SECONDS)) {
                throw new RuntimeException("no SASL authentication");
            }
            zs.whoAmI();
            zs.close();
        }
        System.out.println("DONE");
    }
}
