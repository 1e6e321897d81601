/* Listening sockets. Each loop binds its own socket with SO_REUSEPORT and watches it with
 * a uv_poll_t, accepting by hand: that lets a loop at its connection cap simply stop
 * polling, leaving new connections waiting in the kernel backlog (back-pressure) instead
 * of accepting and dropping them. */
#include "net_int.h"

#include "raproxy/err.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/snapshot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_BACKLOG     1024
#define ACCEPTS_PER_WAKEUP 64
/* Descriptors below the limit a device connection may not take. */
#define LISTEN_FD_HEADROOM 32
#define ADDR_HOST_MAX      256

static int split_address(const char *address, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    if (address[0] == '[') {
        const char *end = strchr(address, ']');
        if (!end || end[1] != ':')
            return RP_E_INVAL;
        if ((size_t)(end - address - 1) >= hcap)
            return RP_E_INVAL;
        memcpy(host, address + 1, (size_t)(end - address - 1));
        host[end - address - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(address, ':');
        if (!colon || (size_t)(colon - address) >= hcap)
            return RP_E_INVAL;
        memcpy(host, address, (size_t)(colon - address));
        host[colon - address] = 0;
    }
    if (strlen(colon + 1) >= pcap || !colon[1])
        return RP_E_INVAL;
    strcpy(port, colon + 1);
    return RP_OK;
}

int net_listener_bind(const char *address, int *fd_out)
{
    char host[ADDR_HOST_MAX], port[16];
    if (split_address(address, host, sizeof host, port, sizeof port))
        return RP_E_CONFIG;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        rp_log_error("listen", "cannot resolve %s: %s", address, gai_strerror(gai));
        return RP_E_CONFIG;
    }
    int fd = -1, rc = RP_E_IO;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0) {
            rc = RP_OK;
            break;
        }
        rp_log_error("listen", "cannot listen on %s: %s", address, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (rc == RP_OK)
        *fd_out = fd;
    return rc;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct net_listener *ls = h->data;
    close(ls->fd);
    free(ls);
}

/* Out of descriptors: give the reserved one up to accept the waiting connection, close it
 * (the client sees a close, not a silent hang), take the reserve back. */
static void shed_with_reserve(struct net_listener *ls)
{
    struct rp_loop *l = ls->loop;
    if (l->reserve_fd >= 0) {
        close(l->reserve_fd);
        l->reserve_fd = -1;
    }
    int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        net_loop_refused(l, RP_REFUSED_FD_LIMIT);
    }
    net_loop_reserve_fd(l);
}

static void on_acceptable(uv_poll_t *p, int status, int events)
{
    struct net_listener *ls = p->data;
    struct rp_loop *l = ls->loop;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP && ls->polling; i++) {
        struct sockaddr_storage ss;
        socklen_t slen = sizeof ss;
        int fd = accept4(ls->fd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                shed_with_reserve(ls);
                continue;
            }
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                rp_log_warn("accept", "accept failed: %s", strerror(errno));
            return;
        }
        /* the last descriptors are for the CA, Redis and the admin listener */
        if (ls->device && (rlim_t)fd + LISTEN_FD_HEADROOM >= l->fd_limit) {
            close(fd);
            net_loop_refused(l, RP_REFUSED_FD_LIMIT);
            continue;
        }
        net_conn_accept(ls, fd, (const struct sockaddr *)&ss);
    }
}

int net_listener_start(struct rp_loop *l, int fd, const struct net_listener *proto)
{
    struct net_listener *ls = calloc(1, sizeof *ls);
    if (!ls)
        return RP_E_NOMEM;
    *ls = *proto;
    ls->loop = l;
    ls->fd = fd;
    if (uv_poll_init(&l->uv, &ls->poll, fd) != 0) {
        free(ls);
        return RP_E_IO;
    }
    ls->poll.data = ls;
    ls->next = l->listeners;
    l->listeners = ls;
    net_listeners_update(l);
    return RP_OK;
}

static bool listener_is_tls(const struct rp_loop *l, const struct net_listener *ls)
{
    return ls->tls_index >= 0 && l->snap->listener_tls && l->snap->listener_tls[ls->tls_index];
}

/* Device listeners stop accepting at the connection cap, TLS ones also at the handshake
 * cap: new connections wait in the kernel backlog instead of being accepted and dropped.
 * The admin listener always accepts. */
void net_listeners_update(struct rp_loop *l)
{
    bool at_cap = l->nconns >= l->max_conns;
    bool hs_cap = l->handshakes >= l->max_handshakes;
    net_loop_set_at_cap(l, at_cap);
    for (struct net_listener *ls = l->listeners; ls; ls = ls->next) {
        if (ls->closed)
            continue;
        bool want = !ls->device || (!at_cap && !(hs_cap && listener_is_tls(l, ls)));
        if (want == ls->polling)
            continue;
        if (want) {
            uv_poll_start(&ls->poll, UV_READABLE, on_acceptable);
        } else {
            uv_poll_stop(&ls->poll);
            rp_metrics_count("raproxy_accept_paused_total",
                             at_cap ? "reason=\"max_connections\"" : "reason=\"max_handshakes\"");
        }
        ls->polling = want;
    }
}

/* Closes the device listeners only; the admin listener lives until the loop stops so that
 * /readyz can answer 503 during the drain. */
void net_listeners_close(struct rp_loop *l)
{
    struct net_listener **pp = &l->listeners;
    while (*pp) {
        struct net_listener *ls = *pp;
        if (ls->device || l->stopped) {
            *pp = ls->next;
            ls->closed = true;
            ls->polling = false;
            struct rp_list_node *n, *nx;
            for (RP_LIST_EACH(n, nx, &l->conns)) {
                struct rp_conn *c = container_of(n, struct rp_conn, link);
                if (c->listener == ls)
                    c->listener = NULL;
            }
            uv_close((uv_handle_t *)&ls->poll, on_listener_closed);
        } else {
            pp = &ls->next;
        }
    }
}
