// zktest Java client driver: one org.apache.zookeeper.ZooKeeper handle driven
// line by line over stdin/stdout by zktest.JavaClient (javaclient.go).
//
// Commands (one per line, space-separated; "-" stands for empty data):
//   connect <connectString> <timeoutMs> [<sessionIdHex> <passwdHex>]
//   session | state | info | close
//   create <path> <data> persistent|ephemeral
//   set <path> <data> | get <path> <watch 0|1> | exists <path> <watch 0|1>
//   children <path> <watch 0|1> | delete <path>
//   servers <connectString>     (ZooKeeper.updateServerList)
// Replies: "R OK <result>" or "R ERR <KeeperException.Code or EXCEPTION> <message>".
// Watcher events, from the default watcher, at any time:
//   "E <KeeperState> <EventType> <path or -> <epoch ms>".
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

public class ZKTestClient implements Watcher {
    private static final PrintStream OUT =
            new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
    private ZooKeeper zk;

    private static synchronized void emit(String line) {
        OUT.println(line);
        OUT.flush();
    }

    @Override
    public void process(WatchedEvent e) {
        String path = e.getPath() == null || e.getPath().isEmpty() ? "-" : e.getPath();
        emit("E " + e.getState() + " " + e.getType() + " " + path + " " + System.currentTimeMillis());
    }

    private static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) {
            sb.append(String.format("%02x", x));
        }
        return sb.toString();
    }

    private static byte[] unhex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return b;
    }

    private static byte[] data(String s) {
        return s.equals("-") ? new byte[0] : s.getBytes(StandardCharsets.UTF_8);
    }

    private String handle(String[] f) throws Exception {
        switch (f[0]) {
            case "connect": {
                int timeout = Integer.parseInt(f[2]);
                if (f.length >= 5) {
                    zk = new ZooKeeper(f[1], timeout, this, Long.parseUnsignedLong(f[3], 16), unhex(f[4]));
                } else {
                    zk = new ZooKeeper(f[1], timeout, this);
                }
                return "";
            }
            case "session":
                return Long.toHexString(zk.getSessionId()) + " " + hex(zk.getSessionPasswd()) + " "
                        + zk.getSessionTimeout();
            case "state":
                return zk.getState().toString();
            case "info":
                try {
                    return zk.toString().replace('\n', ' ');
                } catch (RuntimeException e) {
                    // Between connections the socket is gone and toString can
                    // fail (ClientCnxnSocketNIO.getRemoteSocketAddress).
                    return "State:" + zk.getState() + " remoteserver:null";
                }
            case "close":
                zk.close();
                return "";
            case "servers":
                zk.updateServerList(f[1]);
                return "";
            case "create": {
                CreateMode mode = f[3].equals("ephemeral") ? CreateMode.EPHEMERAL : CreateMode.PERSISTENT;
                return zk.create(f[1], data(f[2]), ZooDefs.Ids.OPEN_ACL_UNSAFE, mode);
            }
            case "set":
                return Long.toHexString(zk.setData(f[1], data(f[2]), -1).getMzxid());
            case "delete":
                zk.delete(f[1], -1);
                return "";
            case "get": {
                Stat st = new Stat();
                byte[] d = zk.getData(f[1], f[2].equals("1"), st);
                String s = d == null || d.length == 0 ? "-" : new String(d, StandardCharsets.UTF_8);
                return s + " " + Long.toHexString(st.getMzxid());
            }
            case "exists": {
                Stat st = zk.exists(f[1], f[2].equals("1"));
                return st == null ? "NONODE" : Long.toHexString(st.getEphemeralOwner());
            }
            case "children": {
                List<String> c = zk.getChildren(f[1], f[2].equals("1"));
                java.util.Collections.sort(c);
                return c.isEmpty() ? "-" : String.join(",", c);
            }
            default:
                throw new IllegalArgumentException("unknown command " + f[0]);
        }
    }

    public static void main(String[] args) throws Exception {
        ZKTestClient c = new ZKTestClient();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            line = line.trim();
            if (line.isEmpty()) {
                continue;
            }
            try {
                emit("R OK " + c.handle(line.split(" ")));
            } catch (KeeperException e) {
                emit("R ERR " + e.code() + " " + String.valueOf(e.getMessage()).replace('\n', ' '));
            } catch (Exception e) {
                emit("R ERR EXCEPTION " + String.valueOf(e).replace('\n', ' '));
            }
        }
        if (c.zk != null) {
            c.zk.close();
        }
    }
}
