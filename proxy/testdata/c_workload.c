// Runs a workload with the ZooKeeper C client (libzookeeper_mt) and prints a
// transcript ("T " lines) free of zxids, times and session ids, so a run
// through zkproxy can be compared with a run against the ensemble.
// Usage: c_workload host:port root (the workload runs under the chroot root).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zookeeper/zookeeper.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static char events[16][256];
static int nevents;
static int disconnects;

static const char *type_name(int type) {
    if (type == ZOO_CREATED_EVENT) return "NodeCreated";
    if (type == ZOO_DELETED_EVENT) return "NodeDeleted";
    if (type == ZOO_CHANGED_EVENT) return "NodeDataChanged";
    if (type == ZOO_CHILD_EVENT) return "NodeChildrenChanged";
    return "other";
}

// session_watcher tracks one handle's connection state: ctx points to its
// "connected" flag.
static void session_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
    if (type != ZOO_SESSION_EVENT) return;
    pthread_mutex_lock(&mu);
    int *connected = ctx;
    if (state == ZOO_CONNECTED_STATE) {
        *connected = 1;
    } else if (*connected && state == ZOO_CONNECTING_STATE) {
        *connected = 0;
        disconnects++;
    }
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
}

// recorder is a one-shot node watcher; ctx names the watch.
static void recorder(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
    if (type == ZOO_SESSION_EVENT) return;
    pthread_mutex_lock(&mu);
    if (nevents < 16) {
        snprintf(events[nevents++], sizeof events[0], "%s %s %s", (const char *)ctx, type_name(type), path);
    }
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// await_events prints n events (sorted), waiting up to 20 s for them.
static void await_events(int n) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    pthread_mutex_lock(&mu);
    while (nevents < n && pthread_cond_timedwait(&cond, &mu, &deadline) == 0) {
    }
    char *sorted[16];
    for (int i = 0; i < nevents; i++) sorted[i] = events[i];
    qsort(sorted, nevents, sizeof sorted[0], cmp);
    for (int i = 0; i < nevents; i++) printf("T event %s\n", sorted[i]);
    for (int i = nevents; i < n; i++) printf("T event none within 20s\n");
    nevents = 0;
    pthread_mutex_unlock(&mu);
}

static zhandle_t *open_handle(const char *hosts, int *connected) {
    zhandle_t *zh = zookeeper_init(hosts, session_watcher, 10000, NULL, connected, 0);
    if (!zh) {
        perror("zookeeper_init");
        exit(2);
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30;
    pthread_mutex_lock(&mu);
    while (!*connected && pthread_cond_timedwait(&cond, &mu, &deadline) == 0) {
    }
    int ok = *connected;
    pthread_mutex_unlock(&mu);
    if (!ok) {
        fprintf(stderr, "no connection to %s\n", hosts);
        exit(2);
    }
    return zh;
}

static int done;
static int done_rc;

static void void_done(int rc, const void *data) {
    pthread_mutex_lock(&mu);
    done_rc = rc;
    done = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
}

static void string_done(int rc, const char *value, const void *data) { void_done(rc, data); }

// await_done waits for the completion of the async call that returned rc.
static int await_done(int rc) {
    if (rc != ZOK) return rc;
    pthread_mutex_lock(&mu);
    while (!done) pthread_cond_wait(&cond, &mu);
    done = 0;
    rc = done_rc;
    pthread_mutex_unlock(&mu);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s host:port root\n", argv[0]);
        return 2;
    }
    zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
    const char *host = argv[1], *root = argv[2];
    char hosts[512], buf[512];
    int rc, len;
    struct Stat stat;

    int setup_up = 0;
    zhandle_t *setup = open_handle(host, &setup_up);
    rc = zoo_create(setup, root, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    printf("T create chroot: %s\n", zerror(rc));
    zookeeper_close(setup);

    snprintf(hosts, sizeof hosts, "%s%s", host, root);
    int zk_up = 0, other_up = 0;
    zhandle_t *zk = open_handle(hosts, &zk_up);
    zhandle_t *other = open_handle(hosts, &other_up);

    rc = zoo_create(zk, "/a", "1", 1, &ZOO_OPEN_ACL_UNSAFE, 0, buf, sizeof buf);
    printf("T create /a: %s %s\n", zerror(rc), rc == ZOK ? buf : "");
    rc = zoo_create(zk, "/a", "1", 1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    printf("T create /a again: %s\n", zerror(rc));
    len = sizeof buf;
    rc = zoo_get(zk, "/a", 0, buf, &len, &stat);
    printf("T get /a: %s %.*s version %d\n", zerror(rc), len, buf, stat.version);
    rc = zoo_set2(zk, "/a", "2", 1, 0, &stat);
    printf("T set /a v0: %s version %d\n", zerror(rc), stat.version);
    rc = zoo_set(zk, "/a", "3", 1, 0);
    printf("T set /a stale: %s\n", zerror(rc));
    rc = zoo_exists(zk, "/missing", 0, &stat);
    printf("T exists /missing: %s\n", zerror(rc));
    rc = zoo_create(zk, "/e", NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL, NULL, 0);
    printf("T create ephemeral: %s\n", zerror(rc));
    rc = zoo_exists(zk, "/e", 0, &stat);
    printf("T ephemeral owner is us: %s %d\n", zerror(rc), stat.ephemeralOwner == zoo_client_id(zk)->client_id);
    for (int i = 0; i < 3; i++) {
        rc = zoo_create(zk, "/seq-", NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_SEQUENCE, buf, sizeof buf);
        printf("T create sequential: %s %s\n", zerror(rc), rc == ZOK ? buf : "");
    }
    rc = zoo_create(zk, "/eseq-", NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL | ZOO_SEQUENCE, buf, sizeof buf);
    printf("T create ephemeral sequential: %s %s\n", zerror(rc), rc == ZOK ? buf : "");
    struct String_vector children;
    rc = zoo_get_children2(zk, "/", 0, &children, &stat);
    qsort(children.data, children.count, sizeof children.data[0], cmp);
    printf("T children: %s numChildren %d:", zerror(rc), stat.numChildren);
    for (int i = 0; i < children.count; i++) printf(" %s", children.data[i]);
    printf("\n");
    deallocate_String_vector(&children);

    zoo_op_t ops[3];
    zoo_op_result_t results[3];
    char created[64];
    zoo_create_op_init(&ops[0], "/m1", "m", 1, &ZOO_OPEN_ACL_UNSAFE, 0, created, sizeof created);
    zoo_check_op_init(&ops[1], "/a", 17);
    zoo_delete_op_init(&ops[2], "/nope", -1);
    rc = zoo_multi(zk, 3, ops, results);
    printf("T multi failing: %s results %s, %s, %s\n", zerror(rc), zerror(results[0].err), zerror(results[1].err),
           zerror(results[2].err));
    rc = zoo_exists(zk, "/m1", 0, &stat);
    printf("T m1 after failed multi: %s\n", zerror(rc));
    struct Stat set_stat;
    zoo_create_op_init(&ops[0], "/m2", "m", 1, &ZOO_OPEN_ACL_UNSAFE, 0, created, sizeof created);
    zoo_set_op_init(&ops[1], "/a", "4", 1, 1, &set_stat);
    zoo_check_op_init(&ops[2], "/a", 2);
    rc = zoo_multi(zk, 3, ops, results);
    printf("T multi ok: %s results %s %s, %s version %d, %s\n", zerror(rc), zerror(results[0].err), created,
           zerror(results[1].err), set_stat.version, zerror(results[2].err));

    len = sizeof buf;
    zoo_wget(zk, "/a", recorder, "data", buf, &len, &stat);
    zoo_wexists(zk, "/later", recorder, "exist", &stat);
    zoo_wget_children(zk, "/", recorder, "child", &children);
    deallocate_String_vector(&children);
    zoo_set(other, "/a", "5", 1, -1);
    zoo_create(other, "/later", NULL, -1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    await_events(3);
    zoo_wexists(zk, "/later", recorder, "exist-delete", &stat);
    zoo_delete(other, "/later", -1);
    await_events(1);

    // A removed watch does not fire (the server drops it: removeWatches).
    static char removed[] = "removed";
    len = sizeof buf;
    zoo_wget(zk, "/a", recorder, removed, buf, &len, &stat);
    rc = zoo_remove_watches(zk, "/a", ZWATCHTYPE_DATA, recorder, removed, 0);
    printf("T remove watches: %s\n", zerror(rc));
    rc = zoo_remove_watches(zk, "/a", ZWATCHTYPE_DATA, recorder, removed, 0);
    printf("T remove watches again: %s\n", zerror(rc));
    zoo_set(other, "/a", "6", 1, -1);
    rc = await_done(zoo_async(zk, "/a", string_done, NULL));
    pthread_mutex_lock(&mu);
    printf("T events after removing: %d\n", nevents);
    pthread_mutex_unlock(&mu);

    rc = await_done(zoo_add_auth(zk, "digest", "alice:secret", 12, void_done, NULL));
    printf("T add_auth: %s\n", zerror(rc));
    rc = zoo_create(zk, "/secret", "s", 1, &ZOO_CREATOR_ALL_ACL, 0, NULL, 0);
    printf("T create /secret: %s\n", zerror(rc));
    len = sizeof buf;
    rc = zoo_get(zk, "/secret", 0, buf, &len, &stat);
    printf("T get /secret as alice: %s %.*s\n", zerror(rc), len > 0 ? len : 0, buf);
    len = sizeof buf;
    rc = zoo_get(other, "/secret", 0, buf, &len, &stat);
    printf("T get /secret as anyone: %s\n", zerror(rc));
    struct ACL_vector acl;
    rc = zoo_get_acl(zk, "/secret", &acl, &stat);
    printf("T get_acl /secret: %s %s %.6s perms %d\n", zerror(rc), acl.count > 0 ? acl.data[0].id.scheme : "",
           acl.count > 0 ? acl.data[0].id.id : "", acl.count > 0 ? acl.data[0].perms : -1);
    deallocate_ACL_vector(&acl);

    rc = await_done(zoo_async(zk, "/", string_done, NULL));
    printf("T sync: %s\n", zerror(rc));
    rc = zoo_delete(zk, "/", -1);
    printf("T delete non-empty: %s\n", zerror(rc));
    rc = zoo_delete(zk, "/m2", 0);
    printf("T delete /m2: %s\n", zerror(rc));
    rc = zoo_delete(zk, "/m2", 0);
    printf("T delete /m2 again: %s\n", zerror(rc));

    zookeeper_close(zk);
    zookeeper_close(other);
    printf("T disconnects: %d\n", disconnects);
    return 0;
}
