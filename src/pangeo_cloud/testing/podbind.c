/* The pod network of the kubelet stand-in (pangeo_cloud/testing/kubelet.py).
 *
 * In a pod, a server listening on "all addresses" listens on the pod's own
 * addresses. Pods run by the stand-in share the machine's network namespace,
 * so this LD_PRELOAD library gives them that meaning: bind() to 0.0.0.0
 * becomes bind() to $PANGEO_POD_IP, and to :: becomes the pod's IPv6 address
 * ($PANGEO_POD_IP6 for an IPv6-only socket, ::ffff:$PANGEO_POD_IP for a
 * dual-stack one). Every other bind() is left alone. Two pods can then both
 * listen on port 8000, as they can in a cluster.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind;
    if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    const char *ip4 = getenv("PANGEO_POD_IP");
    const char *ip6 = getenv("PANGEO_POD_IP6");
    if (addr && ip4 && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY) && inet_pton(AF_INET, ip4, &a.sin_addr) == 1)
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
    } else if (addr && ip4 && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr)) {
            int v6only = 0;
            socklen_t optlen = sizeof v6only;
            getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &optlen);
            char mapped[64];
            snprintf(mapped, sizeof mapped, "::ffff:%s", ip4);
            const char *target = v6only ? ip6 : mapped;
            if (target && inet_pton(AF_INET6, target, &a.sin6_addr) == 1)
                return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    return real_bind(fd, addr, len);
}
