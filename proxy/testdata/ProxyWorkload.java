import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.ClientInfo;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;
import org.apache.zookeeper.server.auth.DigestAuthenticationProvider;

// Runs a workload with the ZooKeeper 3.8 Java client and prints a
// transcript ("T " lines) free of zxids, times and session ids, so a run
// through zkproxy can be compared with a run against the ensemble.
// Usage: ProxyWorkload <host:port> <root>; the workload runs under the
// chroot <root>, and counts the Disconnected events it saw.
public class ProxyWorkload {
    static void t(String s) { System.out.println("T " + s); }

    static final BlockingQueue<String> events = new LinkedBlockingQueue<>();
    static volatile int disconnects = 0;

    static ZooKeeper connect(String cs) throws Exception {
        CountDownLatch up = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(cs, 10000, e -> {
            if (e.getType() == Watcher.Event.EventType.None) {
                if (e.getState() == Watcher.Event.KeeperState.SyncConnected) up.countDown();
                if (e.getState() == Watcher.Event.KeeperState.Disconnected) disconnects++;
            }
        });
        if (!up.await(30, TimeUnit.SECONDS)) throw new RuntimeException("no connection to " + cs);
        return zk;
    }

    static Watcher recorder(String name) {
        return e -> events.add(name + " " + e.getType() + " " + e.getPath());
    }

    static void await(int n) throws InterruptedException {
        List<String> got = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String e = events.poll(20, TimeUnit.SECONDS);
            got.add(e == null ? "none within 20s" : e);
        }
        Collections.sort(got);
        for (String e : got) t("event " + e);
    }

    interface Call { Object run() throws Exception; }

    static String attempt(Call c) {
        try {
            Object o = c.run();
            return "ok " + (o == null ? "" : o.toString());
        } catch (KeeperException e) {
            return e.code().toString();
        } catch (Exception e) {
            return e.getClass().getSimpleName();
        }
    }

    public static void main(String[] args) throws Exception {
        String hostPort = args[0];
        String root = args[1];
        List<ACL> open = ZooDefs.Ids.OPEN_ACL_UNSAFE;

        // Kafka-style: create the chroot with a handle that has none.
        ZooKeeper setup = connect(hostPort);
        t("create chroot: " + attempt(() -> setup.create(root, null, open, CreateMode.PERSISTENT).replace(root, "<root>")));
        setup.close();

        ZooKeeper zk = connect(hostPort + root);
        ZooKeeper other = connect(hostPort + root);
        byte[] one = "1".getBytes(StandardCharsets.UTF_8);

        t("create /a: " + attempt(() -> zk.create("/a", one, open, CreateMode.PERSISTENT)));
        t("create /a again: " + attempt(() -> zk.create("/a", one, open, CreateMode.PERSISTENT)));
        t("create2 /b: " + attempt(() -> { Stat st = new Stat(); zk.create("/b", one, open, CreateMode.PERSISTENT, st); return "v" + st.getVersion(); }));
        t("getData /a: " + attempt(() -> { Stat st = new Stat(); return new String(zk.getData("/a", false, st), StandardCharsets.UTF_8) + " v" + st.getVersion(); }));
        t("setData /a v0: " + attempt(() -> "v" + zk.setData("/a", "2".getBytes(), 0).getVersion()));
        t("setData /a stale: " + attempt(() -> zk.setData("/a", "3".getBytes(), 0)));
        t("exists /missing: " + attempt(() -> zk.exists("/missing", false)));
        t("create ephemeral: " + attempt(() -> zk.create("/e", null, open, CreateMode.EPHEMERAL)));
        t("ephemeral owner is us: " + attempt(() -> zk.exists("/e", false).getEphemeralOwner() == zk.getSessionId()));
        for (int i = 0; i < 3; i++) {
            t("create sequential: " + attempt(() -> zk.create("/seq-", null, open, CreateMode.PERSISTENT_SEQUENTIAL)));
        }
        t("create ephemeral sequential: " + attempt(() -> zk.create("/eseq-", null, open, CreateMode.EPHEMERAL_SEQUENTIAL)));
        t("getEphemerals: " + attempt(() -> { List<String> l = zk.getEphemerals("/"); Collections.sort(l); return l; }));
        t("getAllChildrenNumber: " + attempt(() -> zk.getAllChildrenNumber("/")));
        t("getChildren: " + attempt(() -> { List<String> l = zk.getChildren("/", false); Collections.sort(l); return l; }));

        // multi with a failing op: nothing applied, per-op results.
        try {
            zk.multi(Arrays.asList(Op.create("/m1", null, open, CreateMode.PERSISTENT),
                    Op.check("/a", 17), Op.delete("/b", -1)));
            t("multi failing: ok?!");
        } catch (KeeperException e) {
            StringBuilder sb = new StringBuilder("multi failing: " + e.code());
            for (OpResult r : e.getResults()) {
                sb.append(" ").append(r instanceof OpResult.ErrorResult ? ((OpResult.ErrorResult) r).getErr() : r.getType());
            }
            t(sb.toString());
        }
        t("m1 after failed multi: " + attempt(() -> zk.exists("/m1", false)));
        t("multi ok: " + attempt(() -> zk.multi(Arrays.asList(Op.create("/m2", null, open, CreateMode.PERSISTENT),
                Op.setData("/a", "4".getBytes(), 1), Op.check("/a", 2))).size()));

        // Every watch kind.
        zk.getData("/a", recorder("data"), null);
        zk.exists("/later", recorder("exist"));
        zk.getChildren("/", recorder("child"));
        zk.addWatch("/p", recorder("persistent"), AddWatchMode.PERSISTENT);
        zk.addWatch("/r", recorder("recursive"), AddWatchMode.PERSISTENT_RECURSIVE);
        other.setData("/a", "5".getBytes(), -1);
        other.create("/later", null, open, CreateMode.PERSISTENT);
        await(3); // data /a, exist /later, child /
        other.create("/p", null, open, CreateMode.PERSISTENT);
        other.setData("/p", one, -1);
        await(2); // persistent created, changed
        other.create("/r", null, open, CreateMode.PERSISTENT);
        other.create("/r/x", null, open, CreateMode.PERSISTENT);
        other.create("/r/x/y", null, open, CreateMode.PERSISTENT);
        other.setData("/r/x/y", one, -1);
        other.delete("/r/x/y", -1);
        await(5);
        t("removeAllWatches /p: " + attempt(() -> { zk.removeAllWatches("/p", Watcher.WatcherType.Any, false); return null; }));
        t("removeAllWatches /nothing: " + attempt(() -> { zk.removeAllWatches("/a", Watcher.WatcherType.Data, false); return null; }));
        other.setData("/p", "again".getBytes(), -1);
        other.setData("/r", "again".getBytes(), -1);
        await(1); // only the recursive one is left

        // Digest auth with ACLs.
        zk.addAuthInfo("digest", "alice:secret".getBytes());
        List<ACL> aliceOnly = Collections.singletonList(new ACL(ZooDefs.Perms.ALL,
                new Id("digest", DigestAuthenticationProvider.generateDigest("alice:secret"))));
        t("create /secret: " + attempt(() -> zk.create("/secret", "s".getBytes(), aliceOnly, CreateMode.PERSISTENT)));
        t("get /secret as alice: " + attempt(() -> new String(zk.getData("/secret", false, null))));
        t("get /secret as anyone: " + attempt(() -> other.getData("/secret", false, null)));
        t("getACL /secret: " + attempt(() -> zk.getACL("/secret", new Stat()).get(0).getId().getScheme()));
        t("whoAmI: " + attempt(() -> {
            List<String> l = new ArrayList<>();
            for (ClientInfo ci : zk.whoAmI()) l.add(ci.getAuthScheme() + (ci.getAuthScheme().equals("ip") ? "" : ":" + ci.getUser()));
            Collections.sort(l);
            return l;
        }));
        t("sync: " + attempt(() -> { CountDownLatch l = new CountDownLatch(1); zk.sync("/", (rc, p, c) -> l.countDown(), null); return l.await(10, TimeUnit.SECONDS); }));
        t("delete non-empty: " + attempt(() -> { zk.delete("/r", -1); return null; }));
        t("delete /m2: " + attempt(() -> { zk.delete("/m2", 0); return null; }));
        zk.close();
        other.close();
        t("ephemerals gone after close: " + attempt(() -> { ZooKeeper c = connect(hostPort + root); try { return c.exists("/e", false) == null; } finally { c.close(); } }));
        t("disconnects: " + disconnects);
    }
}
