/*
 * sockets.c - network reach from inside a jail with no egress.
 *   vsock packet netlink inet inet6 raw     socket() of that family must be refused
 *   inet-host PORT   connect to 127.0.0.1:PORT where the host listens: own netns, so no
 *   abstract NAME    connect to the host's abstract unix socket "\0NAME": own netns, so no
 *   unix-ok          a socketpair(AF_UNIX) still works (the jail is not simply broken)
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "hostile.h"

static void try_socket(int fam, int type, int proto, const char *what)
{
	int s = socket(fam, type | SOCK_CLOEXEC, proto);
	if (s >= 0) {
		ESCAPED("socket(%s) created", what);
		close(s);
	} else {
		BLOCKED("socket(%s): %s", what, strerror(errno));
	}
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "inet";
	const char *v = h_variant, *arg = argc > 2 ? argv[2] : "";
	if (!strcmp(v, "vsock")) {
		try_socket(AF_VSOCK, SOCK_STREAM, 0, "AF_VSOCK stream");
		try_socket(AF_VSOCK, SOCK_DGRAM, 0, "AF_VSOCK dgram");
	} else if (!strcmp(v, "packet")) {
		try_socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL), "AF_PACKET raw");
		try_socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL), "AF_PACKET dgram");
	} else if (!strcmp(v, "netlink")) {
		try_socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, "AF_NETLINK route");
		try_socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT, "AF_NETLINK uevent");
		try_socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT, "AF_NETLINK audit");
	} else if (!strcmp(v, "inet")) {
		try_socket(AF_INET, SOCK_STREAM, 0, "AF_INET stream");
		try_socket(AF_INET, SOCK_DGRAM, 0, "AF_INET dgram");
	} else if (!strcmp(v, "inet6")) {
		try_socket(AF_INET6, SOCK_STREAM, 0, "AF_INET6 stream");
	} else if (!strcmp(v, "raw")) {
		try_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP, "AF_INET raw icmp");
		try_socket(AF_INET, SOCK_RAW, IPPROTO_RAW, "AF_INET raw");
		try_socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6, "AF_INET6 raw");
	} else if (!strcmp(v, "inet-host")) {
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0) {
			BLOCKED("socket(AF_INET): %s", strerror(errno));
		} else {
			struct sockaddr_in a = {.sin_family = AF_INET,
			                        .sin_port = htons((uint16_t)strtol(arg, NULL, 10))};
			a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
				ESCAPED("connected to the host's 127.0.0.1:%s", arg);
			else
				BLOCKED("connect 127.0.0.1:%s: %s", arg, strerror(errno));
			close(s);
		}
	} else if (!strcmp(v, "abstract")) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0) {
			BLOCKED("socket(AF_UNIX): %s", strerror(errno));
		} else {
			struct sockaddr_un a = {.sun_family = AF_UNIX};
			size_t n = strlen(arg);
			if (n > sizeof a.sun_path - 1)
				n = sizeof a.sun_path - 1;
			memcpy(a.sun_path + 1, arg, n);
			socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
			if (connect(s, (struct sockaddr *)&a, len) == 0) {
				char buf[128] = "";
				ssize_t r = read(s, buf, sizeof buf - 1);
				if (r > 0)
					buf[r] = 0;
				ESCAPED("connected to host abstract socket @%s, read '%s'", arg, buf);
			} else {
				BLOCKED("connect @%s: %s", arg, strerror(errno));
			}
			close(s);
		}
	} else if (!strcmp(v, "unix-ok")) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0)
			BLOCKED("socketpair(AF_UNIX) works (expected)");
		else
			ESCAPED("socketpair(AF_UNIX) failed: %s (jail too tight)", strerror(errno));
	}
	return h_finish();
}
