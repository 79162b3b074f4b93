import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

// A Kafka-like idle client for tests that move its session under it (a
// member killed, a cutover): it registers watches and an ephemeral under
// root, prints "READY <session id>", waits for "GO" on stdin (the test has
// moved the session and changed the watched nodes meanwhile), then reports
// the events and connection-state changes it saw.
// Usage: IdleClient host:port root
public class IdleClient {
    public static void main(String[] args) throws Exception {
        AtomicInteger disconnects = new AtomicInteger();
        AtomicInteger expired = new AtomicInteger();
        CountDownLatch up = new CountDownLatch(1);
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        ZooKeeper zk = new ZooKeeper(args[0], 10000, e -> {
            if (e.getType() == Watcher.Event.EventType.None) {
                switch (e.getState()) {
                    case SyncConnected: up.countDown(); break;
                    case Disconnected: disconnects.incrementAndGet(); break;
                    case Expired: expired.incrementAndGet(); break;
                    default: break;
                }
            } else {
                events.add(e.getType() + " " + e.getPath());
            }
        });
        if (!up.await(30, TimeUnit.SECONDS)) throw new RuntimeException("no connection");
        String root = args[1];
        zk.create(root, null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.create(root + "/d1", null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.create(root + "/d2", null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.create(root + "/eph", null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
        zk.getData(root + "/d1", true, null);
        zk.getData(root + "/d2", true, null);
        zk.exists(root + "/new", true);
        zk.getChildren(root, true);
        System.out.println("READY 0x" + Long.toHexString(zk.getSessionId()));
        System.out.flush();

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        if (!"GO".equals(in.readLine())) throw new RuntimeException("expected GO");
        List<String> got = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            String e = events.poll(30, TimeUnit.SECONDS);
            got.add(e == null ? "none within 30s" : e);
        }
        Collections.sort(got);
        for (String e : got) System.out.println("T event " + e);
        System.out.println("T ephemeral owner kept: " + (zk.exists(root + "/eph", false).getEphemeralOwner() == zk.getSessionId()));
        System.out.println("T disconnects " + disconnects.get() + " expired " + expired.get());
        zk.close();
    }
}
