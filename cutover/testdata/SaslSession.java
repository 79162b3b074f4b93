import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.client.ZKClientConfig;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.ClientInfo;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;

// SaslSession is one ZooKeeper session authenticated with SASL DIGEST-MD5, the
// way a Kafka broker with zookeeper.set.acl=true runs it: a znode only its SASL
// identity may touch (ACL sasl:bob) and an ephemeral node. It writes and reads
// the znode every 100 ms until its stdin closes, then prints what it saw.
//
// Arguments: connect string, JAAS file (section "SaslClient").
// Output: "EV <state>" for each connection event as it happens, "READY <session
// id>" once set up, "OK <n>" after each successful write and read, then at the end "EVENT <state> <count>" lines,
// "OPS ok=<n>", "ERROR <code> <count>" lines, "SESSION <id>", "WHOAMI <scheme>:<user>"
// lines, "EPHEMERAL <owner id>", "DONE".
public class SaslSession {
    public static void main(String[] args) throws Exception {
        System.setProperty("java.security.auth.login.config", args[1]);
        ZKClientConfig cfg = new ZKClientConfig();
        cfg.setProperty(ZKClientConfig.LOGIN_CONTEXT_NAME_KEY, "SaslClient");
        Map<String, AtomicInteger> events = new ConcurrentHashMap<>();
        CountDownLatch authed = new CountDownLatch(1);
        // 18 s: Kafka's default zookeeper.session.timeout.ms.
        ZooKeeper zk = new ZooKeeper(args[0], 18000, event -> {
            if (event.getType() != Watcher.Event.EventType.None) {
                return;
            }
            events.computeIfAbsent(event.getState().toString(), k -> new AtomicInteger()).incrementAndGet();
            synchronized (System.out) {
                System.out.println("EV " + event.getState());
                System.out.flush();
            }
            if (event.getState() == Watcher.Event.KeeperState.SaslAuthenticated) {
                authed.countDown();
            }
        }, cfg);
        if (!authed.await(60, TimeUnit.SECONDS)) {
            throw new RuntimeException("no SASL authentication");
        }
        List<ACL> onlyBob = Collections.singletonList(new ACL(ZooDefs.Perms.ALL, new Id("sasl", "bob")));
        try {
            zk.create("/sasl-data", new byte[0], onlyBob, CreateMode.PERSISTENT);
        } catch (KeeperException.NodeExistsException e) {
            // a rerun
        }
        zk.create("/sasl-eph", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
        synchronized (System.out) {
            System.out.println("READY " + Long.toHexString(zk.getSessionId()));
            System.out.flush();
        }

        AtomicBoolean stop = new AtomicBoolean();
        Thread stdin = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // wait for EOF
                }
            } catch (Exception e) {
                // EOF all the same
            }
            stop.set(true);
        });
        stdin.setDaemon(true);
        stdin.start();

        int ok = 0;
        Map<String, Integer> errors = new TreeMap<>();
        for (int i = 0; !stop.get(); i++) {
            try {
                zk.setData("/sasl-data", Integer.toString(i).getBytes(StandardCharsets.UTF_8), -1);
                zk.getData("/sasl-data", false, null);
                ok++;
                synchronized (System.out) {
                    System.out.println("OK " + ok);
                    System.out.flush();
                }
            } catch (KeeperException e) {
                errors.merge(e.code().toString(), 1, Integer::sum);
            }
            Thread.sleep(100);
        }

        for (Map.Entry<String, AtomicInteger> e : new TreeMap<>(events).entrySet()) {
            System.out.println("EVENT " + e.getKey() + " " + e.getValue().get());
        }
        System.out.println("OPS ok=" + ok);
        for (Map.Entry<String, Integer> e : errors.entrySet()) {
            System.out.println("ERROR " + e.getKey() + " " + e.getValue());
        }
        System.out.println("SESSION " + Long.toHexString(zk.getSessionId()));
        for (ClientInfo ci : zk.whoAmI()) {
            System.out.println("WHOAMI " + ci.getAuthScheme() + ":" + ci.getUser());
        }
        Stat st = zk.exists("/sasl-eph", false);
        System.out.println("EPHEMERAL " + (st == null ? "none" : Long.toHexString(st.getEphemeralOwner())));
        zk.close();
        System.out.println("DONE");
    }
}
