import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.concurrent.CountDownLatch;

import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

// A Java session with a persistent and a persistent-recursive watch: prints
// "READY <session id hex>", then every event as "EV <type> <path>" and every
// connection state as "STATE <state>", until stdin closes.
public class PersistentWatcher {
    public static void main(String[] args) throws Exception {
        String root = args[1];
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(args[0], 10000, ev -> {
            if (ev.getType() == org.apache.zookeeper.Watcher.Event.EventType.None) {
                System.out.println("STATE " + ev.getState());
                if (ev.getState() == org.apache.zookeeper.Watcher.Event.KeeperState.SyncConnected) {
                    connected.countDown();
                }
            }
        });
        connected.await();
        for (String p : new String[] {root, root + "/p", root + "/r"}) {
            try {
                zk.create(p, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
            } catch (KeeperException.NodeExistsException e) {
            }
        }
        zk.addWatch(root + "/p", ev -> System.out.println("EV " + ev.getType() + " " + ev.getPath()), AddWatchMode.PERSISTENT);
        zk.addWatch(root + "/r", ev -> System.out.println("EV " + ev.getType() + " " + ev.getPath()), AddWatchMode.PERSISTENT_RECURSIVE);
        System.out.println("READY " + Long.toHexString(zk.getSessionId()));
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        while (in.readLine() != null) {
        }
        zk.close();
    }
}
