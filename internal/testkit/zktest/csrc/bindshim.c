/*
 * zktest bind shim (LD_PRELOAD). Linux gives every loopback connection the
 * source address 127.0.0.1 unless the socket is bound first, so iptables rules
 * cannot tell one test ZooKeeper node from another. This wraps connect(2): an
 * unbound IPv4 (or IPv4-mapped IPv6) TCP socket is first bound to
 * $ZKTEST_BIND_IP, port 0, so a server's quorum and election connections leave
 * from its own address. Anything unusual (variable unset, socket already bound,
 * bind failure) falls through to the real connect unchanged.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

static void bind_to_own_address(int fd, const struct sockaddr *dst) {
	const char *ip = getenv("ZKTEST_BIND_IP");
	struct in_addr own;
	if (ip == NULL || dst == NULL || inet_pton(AF_INET, ip, &own) != 1)
		return;
	int type = 0;
	socklen_t tl = sizeof type;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM)
		return;
	int saved = errno;
	if (dst->sa_family == AF_INET) {
		struct sockaddr_in cur;
		socklen_t cl = sizeof cur;
		memset(&cur, 0, sizeof cur);
		if (getsockname(fd, (struct sockaddr *)&cur, &cl) == 0 && cur.sin_port == 0 &&
		    cur.sin_addr.s_addr == htonl(INADDR_ANY)) {
			struct sockaddr_in b;
			memset(&b, 0, sizeof b);
			b.sin_family = AF_INET;
			b.sin_addr = own;
			bind(fd, (struct sockaddr *)&b, sizeof b);
		}
	} else if (dst->sa_family == AF_INET6 &&
		   IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)dst)->sin6_addr)) {
		struct sockaddr_in6 cur;
		socklen_t cl = sizeof cur;
		memset(&cur, 0, sizeof cur);
		if (getsockname(fd, (struct sockaddr *)&cur, &cl) == 0 && cur.sin6_port == 0 &&
		    IN6_IS_ADDR_UNSPECIFIED(&cur.sin6_addr)) {
			struct sockaddr_in6 b;
			memset(&b, 0, sizeof b);
			b.sin6_family = AF_INET6;
			b.sin6_addr.s6_addr[10] = 0xff;
			b.sin6_addr.s6_addr[11] = 0xff;
			memcpy(&b.sin6_addr.s6_addr[12], &own, 4);
			bind(fd, (struct sockaddr *)&b, sizeof b);
		}
	}
	errno = saved;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
	static connect_fn real_connect;
	if (real_connect == NULL)
		real_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
	bind_to_own_address(fd, addr);
	return real_connect(fd, addr, len);
}
