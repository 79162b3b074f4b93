// KafkaWorkload: the ZooKeeper side of a Kafka (ZooKeeper mode) cluster,
// written against the Java ZooKeeper 3.8 client that Kafka brokers use, for
// zkproxy's end-to-end tests (driven by internal/testkit/kafkaload/java.go).
//
// What it does, as Kafka does (docs/protocol.md §8):
//   - N broker sessions register /brokers/ids/<n> with Kafka's
//     CheckedEphemeral: multi[create(EPHEMERAL, null data), setData(version 0)];
//     on NODEEXISTS the registration stands if its ephemeralOwner is this
//     session (KAFKA-7165);
//   - controller election: multi[create /controller EPHEMERAL, setData
//     /controller_epoch (expected version)]; losers keep an exists watch on
//     /controller and run again when it is deleted;
//   - every broker keeps a child watch on /brokers/ids and a data watch on
//     /config/changes, re-armed on each event;
//   - M writer sessions create serial-numbered sequential znodes
//     <chroot>/serial/<writer>/<bucket>/s<serial>- (layout in verify.go) one at
//     a time, retrying a failed create with the same serial like Kafka's
//     retryRequestsUntilConnected; writer 0 changes /config/changes every 10
//     serials.
//
// Arguments: <connectString incl. chroot> <brokers> <writers> <sessionTimeoutMs>
//            <writeIntervalMs> <namePrefix>
// Output, one JSON object per line on stdout:
//   {"ev":"ready","sessions":{"<name>":"<hex id>",...}}
//   {"ev":"ack","w":"<writer>","serial":n}
//   {"ev":"uncertain","w":"<writer>","serial":n,"code":"CONNECTIONLOSS"}
//   {"ev":"state","s":"<session>","state":"Disconnected"}
//   {"ev":"watch","s":"<session>","type":"NodeChildrenChanged","path":"/brokers/ids"}
//   {"ev":"lat","s":"<session>","ns":n,"gen":g}   (a new longest request)
//   {"ev":"err","s":"<session>","msg":"..."}
//   {"ev":"reset","gen":g} {"ev":"probed"} {"ev":"stopped"}
// Commands on stdin: "reset" (forget the longest requests), "probe" (change
// each watched node once), "stop" (end the loops, keep the sessions). EOF or
// SIGTERM closes every session and exits.
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

public class KafkaWorkload {
    static final int BUCKET_SIZE = 5000; // verify.go DefaultBucketSize
    static final PrintStream OUT =
            new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
    static final AtomicInteger latencyGen = new AtomicInteger();
    static volatile boolean running = true;

    static synchronized void emit(String json) {
        OUT.println(json);
    }

    static String q(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }

    static void err(String session, String msg) {
        emit("{\"ev\":\"err\",\"s\":" + q(session) + ",\"msg\":" + q(msg) + "}");
    }

    interface Call<T> {
        T run() throws Exception;
    }

    /** One ZooKeeper handle and what it observed. */
    static final class Session implements Watcher {
        final String name;
        final CountDownLatch connected = new CountDownLatch(1);
        final AtomicLong maxNanos = new AtomicLong();
        ZooKeeper zk;

        Session(String name) {
            this.name = name;
        }

        @Override
        public void process(WatchedEvent e) {
            // The default watcher sees connection-state changes only: every
            // watch below is registered with its own Watcher.
            if (e.getType() == Event.EventType.None) {
                emit("{\"ev\":\"state\",\"s\":" + q(name) + ",\"state\":" + q(e.getState().toString()) + "}");
                if (e.getState() == Event.KeeperState.SyncConnected) {
                    connected.countDown();
                }
            }
        }

        /** timed runs one request and reports a new longest one. */
        <T> T timed(Call<T> c) throws Exception {
            long start = System.nanoTime();
            try {
                return c.run();
            } finally {
                long d = System.nanoTime() - start;
                long cur;
                while (d > (cur = maxNanos.get())) {
                    if (maxNanos.compareAndSet(cur, d)) {
                        emit("{\"ev\":\"lat\",\"s\":" + q(name) + ",\"ns\":" + d + ",\"gen\":" + latencyGen.get() + "}");
                        break;
                    }
                }
            }
        }
    }

    /** A broker: registration, controller election and watches. */
    static final class Broker implements Runnable {
        final Session s;
        final int id;
        final BlockingQueue<String> tasks = new LinkedBlockingQueue<>();
        final Thread thread;

        Broker(Session s, int id) {
            this.s = s;
            this.id = id;
            this.thread = new Thread(this, s.name);
        }

        Watcher watcher(String rearm) {
            return e -> {
                if (e.getType() == Watcher.Event.EventType.None) {
                    return;
                }
                emit("{\"ev\":\"watch\",\"s\":" + q(s.name) + ",\"type\":" + q(e.getType().toString())
                        + ",\"path\":" + q(e.getPath() == null ? "" : e.getPath()) + "}");
                tasks.add(rearm);
            };
        }

        /** register is Kafka's CheckedEphemeral (KafkaZkClient.registerBroker). */
        void register() throws Exception {
            String path = "/brokers/ids/" + id;
            byte[] data = ("{\"broker\":\"" + s.name + "\"}").getBytes(StandardCharsets.UTF_8);
            try {
                s.timed(() -> s.zk.multi(Arrays.asList(
                        Op.create(path, null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL),
                        Op.setData(path, data, 0))));
            } catch (KeeperException.NodeExistsException e) {
                Stat st = new Stat();
                s.timed(() -> s.zk.getData(path, false, st));
                if (st.getEphemeralOwner() != s.zk.getSessionId()) {
                    throw new IllegalStateException(path + " owned by another session 0x"
                            + Long.toHexString(st.getEphemeralOwner()));
                }
            }
        }

        /** elect is Kafka's controller election (KafkaZkClient.registerControllerAndIncrementControllerEpoch). */
        void elect() throws Exception {
            Stat st = new Stat();
            byte[] epoch = s.timed(() -> s.zk.getData("/controller_epoch", false, st));
            int next = Integer.parseInt(new String(epoch, StandardCharsets.UTF_8).trim()) + 1;
            try {
                s.timed(() -> s.zk.multi(Arrays.asList(
                        Op.create("/controller", ("{\"brokerid\":" + id + "}").getBytes(StandardCharsets.UTF_8),
                                ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL),
                        Op.setData("/controller_epoch", Integer.toString(next).getBytes(StandardCharsets.UTF_8),
                                st.getVersion()))));
            } catch (KeeperException.NodeExistsException | KeeperException.BadVersionException e) {
                // Someone else leads (or just did): watch them instead.
            }
            if (s.timed(() -> s.zk.exists("/controller", watcher("controller"))) == null) {
                tasks.add("controller"); // deleted in between: run again
            }
        }

        void arm(String task) throws Exception {
            switch (task) {
                case "children":
                    s.timed(() -> s.zk.getChildren("/brokers/ids", watcher("children")));
                    break;
                case "config":
                    s.timed(() -> s.zk.getData("/config/changes", watcher("config"), null));
                    break;
                case "controller":
                    elect();
                    break;
                default:
                    throw new IllegalArgumentException(task);
            }
        }

        @Override
        public void run() {
            tasks.addAll(List.of("children", "config", "controller"));
            while (running) {
                String task;
                try {
                    task = tasks.take();
                } catch (InterruptedException e) {
                    return;
                }
                try {
                    arm(task);
                } catch (InterruptedException e) {
                    return;
                } catch (KeeperException.SessionExpiredException e) {
                    err(s.name, task + ": " + e);
                    return;
                } catch (Exception e) {
                    if (!running) {
                        return;
                    }
                    err(s.name, task + ": " + e);
                    tasks.add(task); // retry after a pause, as Kafka does
                    try {
                        Thread.sleep(50);
                    } catch (InterruptedException ie) {
                        return;
                    }
                }
            }
        }
    }

    /** A writer of serial-numbered sequential znodes. */
    static final class Writer implements Runnable {
        final Session s;
        final String name;
        final long intervalMs;
        final boolean drivesConfig;
        final Thread thread;

        Writer(Session s, String name, long intervalMs, boolean drivesConfig) {
            this.s = s;
            this.name = name;
            this.intervalMs = intervalMs;
            this.drivesConfig = drivesConfig;
            this.thread = new Thread(this, s.name);
        }

        static String bucket(String writer, int serial) {
            return String.format("/serial/%s/%04d", writer, (serial - 1) / BUCKET_SIZE);
        }

        @Override
        public void run() {
            int serial = 1;
            while (running) {
                final int n = serial;
                try {
                    if (n % BUCKET_SIZE == 1 && n > 1) {
                        try {
                            s.timed(() -> s.zk.create(bucket(name, n), null, ZooDefs.Ids.OPEN_ACL_UNSAFE,
                                    CreateMode.PERSISTENT));
                        } catch (KeeperException.NodeExistsException e) {
                            // a retry after an uncertain outcome
                        }
                    }
                    String prefix = String.format("%s/s%09d-", bucket(name, n), n);
                    try {
                        s.timed(() -> s.zk.create(prefix, Integer.toString(n).getBytes(StandardCharsets.UTF_8),
                                ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_SEQUENTIAL));
                    } catch (KeeperException e) {
                        // The request may have been applied (connection loss)
                        // or not: the retry may duplicate it.
                        emit("{\"ev\":\"uncertain\",\"w\":" + q(name) + ",\"serial\":" + n + ",\"code\":"
                                + q(e.code().toString()) + "}");
                        throw e;
                    }
                    emit("{\"ev\":\"ack\",\"w\":" + q(name) + ",\"serial\":" + n + "}");
                    serial++;
                    if (drivesConfig && serial % 10 == 0) {
                        final int v = serial;
                        s.timed(() -> s.zk.setData("/config/changes",
                                Integer.toString(v).getBytes(StandardCharsets.UTF_8), -1));
                    }
                } catch (InterruptedException e) {
                    return;
                } catch (KeeperException.SessionExpiredException e) {
                    err(s.name, "write: " + e);
                    return;
                } catch (Exception e) {
                    if (!running) {
                        return;
                    }
                    err(s.name, "write serial " + n + ": " + e);
                }
                try {
                    Thread.sleep(intervalMs);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }
    }

    static Session connect(String connect, String name, int timeoutMs) throws Exception {
        Session s = new Session(name);
        s.zk = new ZooKeeper(connect, timeoutMs, s);
        if (!s.connected.await(30, TimeUnit.SECONDS)) {
            throw new IllegalStateException(name + ": no session after 30s");
        }
        return s;
    }

    static void createIfMissing(ZooKeeper zk, String path, byte[] data) throws Exception {
        try {
            zk.create(path, data, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        } catch (KeeperException.NodeExistsException e) {
            // another client, or an earlier run, made it
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: KafkaWorkload <connect[/chroot]> <brokers> <writers> <timeoutMs> <intervalMs> <prefix>");
            System.exit(2);
        }
        String connect = args[0];
        int brokers = Integer.parseInt(args[1]);
        int writers = Integer.parseInt(args[2]);
        int timeoutMs = Integer.parseInt(args[3]);
        long intervalMs = Long.parseLong(args[4]);
        String prefix = args[5];

        // Kafka creates its chroot first with a handle that has none
        // (KafkaZkClient.createChrootIfNecessary).
        int slash = connect.indexOf('/');
        if (slash >= 0) {
            Session root = connect(connect.substring(0, slash), prefix + "chroot", timeoutMs);
            StringBuilder p = new StringBuilder();
            for (String part : connect.substring(slash + 1).split("/")) {
                if (!part.isEmpty()) {
                    p.append('/').append(part);
                    createIfMissing(root.zk, p.toString(), null);
                }
            }
            root.zk.close();
        }

        List<Session> all = new ArrayList<>();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            running = false;
            for (Session s : all) {
                try {
                    s.zk.close();
                } catch (Exception e) {
                    // exiting anyway
                }
            }
        }));
        List<Broker> bs = new ArrayList<>();
        List<Writer> ws = new ArrayList<>();
        for (int i = 0; i < brokers; i++) {
            Session s = connect(connect, prefix + "broker-" + i, timeoutMs);
            all.add(s);
            bs.add(new Broker(s, i));
        }
        for (int i = 0; i < writers; i++) {
            Session s = connect(connect, prefix + "writer-" + i, timeoutMs);
            all.add(s);
            ws.add(new Writer(s, prefix + "w" + i, intervalMs, i == 0));
        }
        ZooKeeper zk = all.get(0).zk;
        for (String p : List.of("/brokers", "/brokers/ids", "/config", "/config/changes", "/serial")) {
            createIfMissing(zk, p, null);
        }
        createIfMissing(zk, "/controller_epoch", "0".getBytes(StandardCharsets.UTF_8));
        for (Writer w : ws) {
            createIfMissing(zk, "/serial/" + w.name, null);
            createIfMissing(zk, Writer.bucket(w.name, 1), null);
        }
        for (Broker b : bs) {
            b.register();
        }
        StringBuilder ready = new StringBuilder("{\"ev\":\"ready\",\"sessions\":{");
        for (int i = 0; i < all.size(); i++) {
            Session s = all.get(i);
            ready.append(i > 0 ? "," : "").append(q(s.name)).append(":").append(q(Long.toHexString(s.zk.getSessionId())));
        }
        emit(ready.append("}}").toString());
        for (Broker b : bs) {
            b.thread.start();
        }
        for (Writer w : ws) {
            w.thread.start();
        }

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        int probes = 0;
        while ((line = in.readLine()) != null) {
            switch (line.trim()) {
                case "reset":
                    int gen = latencyGen.incrementAndGet();
                    for (Session s : all) {
                        s.maxNanos.set(0);
                    }
                    emit("{\"ev\":\"reset\",\"gen\":" + gen + "}");
                    break;
                case "probe":
                    probes++;
                    try {
                        Session s = ws.isEmpty() ? all.get(0) : ws.get(0).s;
                        s.zk.setData("/config/changes", ("probe" + probes).getBytes(StandardCharsets.UTF_8), -1);
                        String p = "/brokers/ids/probe-" + probes;
                        s.zk.create(p, null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
                        s.zk.delete(p, -1);
                        emit("{\"ev\":\"probed\"}");
                    } catch (Exception e) {
                        err("probe", e.toString());
                        emit("{\"ev\":\"probed\",\"failed\":true}");
                    }
                    break;
                case "stop":
                    running = false;
                    for (Broker b : bs) {
                        b.thread.interrupt();
                    }
                    // Writers finish the request they are in, so its outcome
                    // is reported.
                    for (Writer w : ws) {
                        w.thread.join(30000);
                    }
                    for (Broker b : bs) {
                        b.thread.join(30000);
                    }
                    emit("{\"ev\":\"stopped\"}");
                    break;
                default:
                    err("stdin", "unknown command " + line);
            }
        }
        System.exit(0); // the shutdown hook closes the sessions
    }
}
