// A Kafka-like idle client on the ZooKeeper C client (libzookeeper_mt), for
// tests that move its session under it (a member killed, a cutover): it
// creates root with children d1, d2 and the ephemeral eph, watches d1 and d2
// (data), root/new (exists) and root (children), prints
// "READY <session id>", waits for "GO" on stdin (the test has moved the
// session and changed the watched nodes meanwhile), then reports the events
// and connection-state changes it saw, spelled as the Java client names
// them (java/IdleClient.java).
// Usage: idle_client host:port root
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zookeeper/zookeeper.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static char events[8][256];
static int nevents;
static int connected, disconnects, expired;

static const char *type_name(int type) {
    if (type == ZOO_CREATED_EVENT) return "NodeCreated";
    if (type == ZOO_DELETED_EVENT) return "NodeDeleted";
    if (type == ZOO_CHANGED_EVENT) return "NodeDataChanged";
    if (type == ZOO_CHILD_EVENT) return "NodeChildrenChanged";
    return "other";
}

// watcher is the handle's default watcher: session states, and the node
// events of the watches set with watch=1.
static void watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
    pthread_mutex_lock(&mu);
    if (type == ZOO_SESSION_EVENT) {
        if (state == ZOO_CONNECTED_STATE) {
            connected = 1;
        } else if (state == ZOO_EXPIRED_SESSION_STATE) {
            expired++;
        } else if (connected && state == ZOO_CONNECTING_STATE) {
            connected = 0;
            disconnects++;
        }
    } else if (nevents < 8) {
        snprintf(events[nevents++], sizeof events[0], "%s %s", type_name(type), path);
    }
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void must(int rc, const char *what) {
    if (rc != ZOK) {
        fprintf(stderr, "%s: %s\n", what, zerror(rc));
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s host:port root\n", argv[0]);
        return 2;
    }
    const char *root = argv[2];
    char d1[256], d2[256], eph[256], fresh[256];
    snprintf(d1, sizeof d1, "%s/d1", root);
    snprintf(d2, sizeof d2, "%s/d2", root);
    snprintf(eph, sizeof eph, "%s/eph", root);
    snprintf(fresh, sizeof fresh, "%s/new", root);
    zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
    zhandle_t *zk = zookeeper_init(argv[1], watcher, 10000, NULL, NULL, 0);
    if (!zk) {
        perror("zookeeper_init");
        return 2;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30;
    pthread_mutex_lock(&mu);
    while (!connected && pthread_cond_timedwait(&cond, &mu, &deadline) == 0) {
    }
    int up = connected;
    pthread_mutex_unlock(&mu);
    if (!up) {
        fprintf(stderr, "no connection\n");
        return 1;
    }
    must(zoo_create(zk, root, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0), "create root");
    must(zoo_create(zk, d1, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0), "create d1");
    must(zoo_create(zk, d2, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0), "create d2");
    must(zoo_create(zk, eph, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL, NULL, 0), "create eph");
    char buf[64];
    int len = sizeof buf;
    struct Stat stat;
    must(zoo_get(zk, d1, 1, buf, &len, &stat), "get d1");
    len = sizeof buf;
    must(zoo_get(zk, d2, 1, buf, &len, &stat), "get d2");
    if (zoo_exists(zk, fresh, 1, &stat) != ZNONODE) {
        fprintf(stderr, "%s exists\n", fresh);
        return 1;
    }
    struct String_vector children;
    must(zoo_get_children(zk, root, 1, &children), "get_children root");
    deallocate_String_vector(&children);
    printf("READY 0x%" PRIx64 "\n", (uint64_t)zoo_client_id(zk)->client_id);
    fflush(stdout);

    char line[16];
    if (!fgets(line, sizeof line, stdin) || strcmp(line, "GO\n") != 0) {
        fprintf(stderr, "expected GO\n");
        return 1;
    }
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30;
    pthread_mutex_lock(&mu);
    while (nevents < 4 && pthread_cond_timedwait(&cond, &mu, &deadline) == 0) {
    }
    char *sorted[8];
    int n = nevents < 4 ? nevents : 4;
    for (int i = 0; i < n; i++) sorted[i] = events[i];
    qsort(sorted, n, sizeof sorted[0], cmp);
    for (int i = 0; i < n; i++) printf("T event %s\n", sorted[i]);
    for (int i = n; i < 4; i++) printf("T event none within 30s\n");
    pthread_mutex_unlock(&mu);

    int rc = zoo_exists(zk, eph, 0, &stat);
    printf("T ephemeral owner kept: %s\n", rc == ZOK && stat.ephemeralOwner == zoo_client_id(zk)->client_id ? "true" : "false");
    pthread_mutex_lock(&mu);
    printf("T disconnects %d expired %d\n", disconnects, expired);
    pthread_mutex_unlock(&mu);
    fflush(stdout);
    zookeeper_close(zk);
    return 0;
}
