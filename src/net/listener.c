/* Listening sockets. Each loop binds its own socket with SO_REUSEPORT and watches it with
 * a uv_poll_t, accepting by hand: that lets a loop at its connection cap simply stop
 * polling, leaving new connections waiting in the kernel backlog (back-pressure) instead
 * of accepting and dropping them. */
#include "net_int.h"

#include "raproxy/err.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_BACKLOG     1024
#define ACCEPTS_PER_WAKEUP 64
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

int rp_listener_bind(const char *address, int *fd_out)
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
    struct rp_listener *ls = h->data;
    close(ls->fd);
    free(ls);
}

static void on_acceptable(uv_poll_t *p, int status, int events)
{
    struct rp_listener *ls = p->data;
    struct rp_loop *l = ls->loop;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        if (ls->device && l->nconns >= l->max_conns) {
            rp_listeners_pause(l);
            rp_metrics_count("raproxy_accept_paused_total", NULL);
            return;
        }
        int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED) {
                /* EMFILE/ENFILE: out of descriptors; stop for now, resume when one closes */
                rp_log_warn("accept", "accept failed: %s", strerror(errno));
                rp_listeners_pause(l);
            }
            return;
        }
        rp_conn_accept(ls, fd);
    }
}

int rp_listener_start(struct rp_loop *l, int fd, const struct rp_listener *proto)
{
    struct rp_listener *ls = calloc(1, sizeof *ls);
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
    uv_poll_start(&ls->poll, UV_READABLE, on_acceptable);
    ls->polling = true;
    ls->next = l->listeners;
    l->listeners = ls;
    return RP_OK;
}

void rp_listeners_pause(struct rp_loop *l)
{
    for (struct rp_listener *ls = l->listeners; ls; ls = ls->next)
        if (ls->device && ls->polling && !ls->closed) {
            uv_poll_stop(&ls->poll);
            ls->polling = false;
        }
}

void rp_listeners_resume(struct rp_loop *l)
{
    for (struct rp_listener *ls = l->listeners; ls; ls = ls->next)
        if (!ls->polling && !ls->closed) {
            uv_poll_start(&ls->poll, UV_READABLE, on_acceptable);
            ls->polling = true;
        }
}

/* Closes the device listeners only; the admin listener lives until the loop stops so that
 * /readyz can answer 503 during the drain. */
void rp_listeners_close(struct rp_loop *l)
{
    struct rp_listener **pp = &l->listeners;
    while (*pp) {
        struct rp_listener *ls = *pp;
        if (ls->device || l->stopped) {
            *pp = ls->next;
            ls->closed = true;
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
