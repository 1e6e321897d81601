#include "stream.h"

#include "raproxy/buf.h"
#include "raproxy/err.h"
#include "raproxy/tls.h"

#include <stdlib.h>
#include <string.h>

struct stream_write {
    uv_write_t req; /* first: libuv hands this pointer back */
    void *owner;
    uint8_t data[];
};

int rp_stream_write(uv_stream_t *s, const uint8_t *p, size_t n, void *owner, unsigned *writes,
                    uv_write_cb cb)
{
    if (!n)
        return RP_OK;
    struct stream_write *w = malloc(sizeof *w + n);
    if (!w)
        return RP_E_NOMEM;
    w->owner = owner;
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
    if (uv_write(&w->req, s, &b, 1, cb) != 0) {
        free(w);
        return RP_E_IO;
    }
    (*writes)++;
    return RP_OK;
}

int rp_stream_flush_tls(uv_stream_t *s, struct rp_tls *tls, void *owner, unsigned *writes,
                        uv_write_cb cb)
{
    struct rp_buf *o = rp_tls_out(tls);
    size_t n = rp_buf_avail(o);
    int rc = rp_stream_write(s, rp_buf_head(o), n, owner, writes, cb);
    rp_buf_consume(o, n);
    rp_buf_compact(o);
    return rc;
}

int rp_stream_send(uv_stream_t *s, struct rp_tls *tls, const uint8_t *p, size_t n, void *owner,
                   unsigned *writes, uv_write_cb cb)
{
    if (!tls)
        return rp_stream_write(s, p, n, owner, writes, cb);
    int rc = rp_tls_write(tls, p, n);
    return rc ? rc : rp_stream_flush_tls(s, tls, owner, writes, cb);
}

void *rp_stream_write_done(uv_write_t *req)
{
    struct stream_write *w = (struct stream_write *)req;
    void *owner = w->owner;
    free(w);
    return owner;
}
