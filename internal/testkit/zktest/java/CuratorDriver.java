// zktest Curator driver (curator.go), for the /zookeeper/config rewrite tests:
// an Apache Curator 5 client (with its EnsembleTracker on, Curator's default),
// plain ZooKeeper handles and a ZooKeeperAdmin, driven line by line over stdin.
//
// Commands:
//   curator <connectString>      start Curator, wait until connected
//   conn                         the connection string Curator holds now
//   session                      Curator's session id (hex)
//   config                       Curator getConfig().forEnsemble()
//   reconfig <leavingId>         Curator reconfig().leaving(id).forEnsemble()
//   check                        Curator checkExists("/")
//   zkconfig <connectString>     plain client: ZooKeeper.getConfig
//   zkget <connectString> <path> plain client: getData
//   adminreconfig <connectString> <joining|-> <leaving|->   ZooKeeperAdmin.reconfigure
// Replies: "R OK <result>" or "R ERR <KeeperException code or exception> <message>";
// config data has its newlines as '|'. Every connection string Curator's
// ensemble provider is given, at any time: "C <connectString>".
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.curator.ensemble.EnsembleProvider;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.admin.ZooKeeperAdmin;
import org.apache.zookeeper.data.Stat;

public class CuratorDriver {
    private static final PrintStream OUT =
            new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);

    static synchronized void emit(String line) {
        OUT.println(line);
        OUT.flush();
    }

    // RecordingProvider is a fixed ensemble provider that reports every
    // connection string EnsembleTracker hands it.
    static class RecordingProvider implements EnsembleProvider {
        private volatile String cs;

        RecordingProvider(String cs) {
            this.cs = cs;
        }

        public void start() {}

        public String getConnectionString() {
            return cs;
        }

        public void close() {}

        public void setConnectionString(String s) {
            cs = s;
            emit("C " + s);
        }

        public boolean updateServerListEnabled() {
            return true;
        }
    }

    private CuratorFramework curator;
    private RecordingProvider provider;

    private static String flat(byte[] b) {
        return new String(b, StandardCharsets.UTF_8).replace('\n', '|');
    }

    private static ZooKeeper connect(String cs) throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(cs, 10000, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
                connected.countDown();
            }
        });
        if (!connected.await(20, TimeUnit.SECONDS)) {
            zk.close();
            throw new IllegalStateException("not connected to " + cs + " within 20 s");
        }
        return zk;
    }

    private String handle(String[] f) throws Exception {
        switch (f[0]) {
            case "curator": {
                provider = new RecordingProvider(f[1]);
                curator = CuratorFrameworkFactory.builder()
                        .ensembleProvider(provider)
                        .sessionTimeoutMs(10000)
                        .connectionTimeoutMs(5000)
                        .retryPolicy(new RetryNTimes(100, 200))
                        .build();
                curator.start();
                if (!curator.blockUntilConnected(20, TimeUnit.SECONDS)) {
                    throw new IllegalStateException("Curator not connected within 20 s");
                }
                return "";
            }
            case "conn":
                return provider.getConnectionString() + " " + curator.getZookeeperClient().getCurrentConnectionString();
            case "session":
                return Long.toHexString(curator.getZookeeperClient().getZooKeeper().getSessionId());
            case "config":
                return flat(curator.getConfig().forEnsemble());
            case "reconfig":
                return flat(curator.reconfig().leaving(f[1]).forEnsemble());
            case "check":
                return String.valueOf(curator.checkExists().forPath("/") != null);
            case "zkconfig": {
                ZooKeeper zk = connect(f[1]);
                try {
                    return flat(zk.getConfig(false, new Stat()));
                } finally {
                    zk.close();
                }
            }
            case "zkget": {
                ZooKeeper zk = connect(f[1]);
                try {
                    return flat(zk.getData(f[2], false, new Stat()));
                } finally {
                    zk.close();
                }
            }
            case "adminreconfig": {
                CountDownLatch connected = new CountDownLatch(1);
                ZooKeeperAdmin admin = new ZooKeeperAdmin(f[1], 10000, e -> {
                    if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
                        connected.countDown();
                    }
                });
                try {
                    if (!connected.await(20, TimeUnit.SECONDS)) {
                        throw new IllegalStateException("admin not connected");
                    }
                    String joining = f[2].equals("-") ? null : f[2];
                    String leaving = f[3].equals("-") ? null : f[3];
                    return flat(admin.reconfigure(joining, leaving, null, -1, new Stat()));
                } finally {
                    admin.close();
                }
            }
            default:
                throw new IllegalArgumentException("unknown command " + f[0]);
        }
    }

    public static void main(String[] args) throws Exception {
        CuratorDriver d = new CuratorDriver();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.trim().split(" ");
            try {
                emit("R OK " + d.handle(f));
            } catch (KeeperException e) {
                emit("R ERR " + e.code() + " " + String.valueOf(e.getMessage()).replace('\n', ' '));
            } catch (Exception e) {
                emit("R ERR EXCEPTION " + e.getClass().getName() + ": " + String.valueOf(e.getMessage()).replace('\n', ' '));
            }
        }
        if (d.curator != null) {
            d.curator.close();
        }
    }
}
