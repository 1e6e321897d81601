#include "httpc.h"
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void rpt_resp_free(struct rpt_resp *r)
{
    free(r->body);
    r->body = NULL;
}

int rpt_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static size_t build_req(char **out, const char *method, const char *path, const char *ctype,
                        const void *body, size_t len, int keep_alive)
{
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sContent-Length: %zu\r\n"
                     "Connection: %s\r\n\r\n",
                     method, path, ctype ? "Content-Type: " : "", ctype ? ctype : "",
                     ctype ? "\r\n" : "", len, keep_alive ? "keep-alive" : "close");
    *out = malloc((size_t)n + len);
    memcpy(*out, head, (size_t)n);
    if (len)
        memcpy(*out + n, body, len);
    return (size_t)n + len;
}

/* Parses one complete response at the start of buf; returns bytes used, 0 if incomplete. */
static size_t parse_resp(const char *buf, size_t n, struct rpt_resp *r)
{
    const char *end = NULL;
    for (size_t i = 3; i < n; i++)
        if (memcmp(buf + i - 3, "\r\n\r\n", 4) == 0) {
            end = buf + i + 1;
            break;
        }
    if (!end)
        return 0;
    size_t hlen = (size_t)(end - buf);
    long clen = 0;
    int status = 0;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    const char *p = buf;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if (strncasecmp(p, "content-length:", 15) == 0)
            clen = strtol(p + 15, NULL, 10);
        if (r && strncasecmp(p, "content-type:", 13) == 0) {
            const char *v = p + 13;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(eol - v);
            while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
                vl--;
            if (vl >= sizeof r->ctype)
                vl = sizeof r->ctype - 1;
            memcpy(r->ctype, v, vl);
            r->ctype[vl] = 0;
        }
        p = eol + 1;
    }
    if (n < hlen + (size_t)clen)
        return 0;
    if (r) {
        r->status = status;
        size_t hl = hlen < sizeof r->headers ? hlen : sizeof r->headers - 1;
        memcpy(r->headers, buf, hl);
        r->headers[hl] = 0;
        r->body = malloc((size_t)clen + 1);
        memcpy(r->body, buf + hlen, (size_t)clen);
        r->body[clen] = 0;
        r->body_len = (size_t)clen;
    }
    return hlen + (size_t)clen;
}

int rpt_http(int port, const char *method, const char *path, const char *ctype, const void *body,
             size_t len, int timeout_ms, struct rpt_resp *out)
{
    memset(out, 0, sizeof *out);
    int fd = rpt_connect(port);
    if (fd < 0)
        return -1;
    char *req;
    size_t rl = build_req(&req, method, path, ctype, body, len, 0);
    size_t off = 0;
    while (off < rl) {
        ssize_t w = write(fd, req + off, rl - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(req);
    size_t cap = 65536 * 4, n = 0;
    char *buf = malloc(cap);
    long deadline = rpt_mono_ms() + timeout_ms;
    int rc = -1;
    while (rpt_mono_ms() < deadline && n < cap) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        ssize_t r = read(fd, buf + n, cap - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (parse_resp(buf, n, out)) {
            rc = 0;
            break;
        }
    }
    if (rc != 0 && n && parse_resp(buf, n, out))
        rc = 0;
    free(buf);
    close(fd);
    return rc;
}

struct pconn {
    int fd;
    int sent, got;
    size_t woff;
    char *rbuf;
    size_t rlen;
};

int rpt_http_parallel(int port, const char *path, const char *ctype, const void *body, size_t len,
                      int n, int per_conn, int want, int timeout_ms)
{
    struct pconn *c = calloc((size_t)n, sizeof *c);
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    char *req;
    size_t rl = build_req(&req, "POST", path, ctype, body, len, 1);
    const size_t rcap = 1 << 18;
    for (int i = 0; i < n; i++) {
        c[i].fd = rpt_connect(port);
        c[i].rbuf = malloc(rcap);
        if (c[i].fd >= 0)
            fcntl(c[i].fd, F_SETFL, O_NONBLOCK);
    }
    int ok = 0, done = 0;
    long deadline = rpt_mono_ms() + timeout_ms;
    while (done < n && rpt_mono_ms() < deadline) {
        for (int i = 0; i < n; i++) {
            pf[i].fd = c[i].fd;
            pf[i].events = 0;
            if (c[i].fd < 0 || c[i].got >= per_conn)
                continue;
            pf[i].events = POLLIN;
            if (c[i].sent == c[i].got) /* one request in flight at a time */
                pf[i].events |= POLLOUT;
        }
        if (poll(pf, (nfds_t)n, 50) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            struct pconn *k = &c[i];
            if (k->fd < 0 || k->got >= per_conn)
                continue;
            if ((pf[i].revents & POLLOUT) && k->sent == k->got) {
                ssize_t w = write(k->fd, req + k->woff, rl - k->woff);
                if (w > 0)
                    k->woff += (size_t)w;
                if (k->woff == rl) {
                    k->woff = 0;
                    k->sent++;
                }
            }
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = read(k->fd, k->rbuf + k->rlen, rcap - k->rlen);
                if (r <= 0) {
                    close(k->fd);
                    k->fd = -1;
                    done++;
                    continue;
                }
                k->rlen += (size_t)r;
                struct rpt_resp resp;
                size_t used;
                while (
                    (memset(&resp, 0, sizeof resp), used = parse_resp(k->rbuf, k->rlen, &resp))) {
                    if (resp.status == want)
                        ok++;
                    rpt_resp_free(&resp);
                    memmove(k->rbuf, k->rbuf + used, k->rlen - used);
                    k->rlen -= used;
                    k->got++;
                }
                if (k->got >= per_conn) {
                    close(k->fd);
                    k->fd = -1;
                    done++;
                }
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (c[i].fd >= 0)
            close(c[i].fd);
        free(c[i].rbuf);
    }
    free(req);
    free(c);
    free(pf);
    return ok;
}
