/* libFuzzer target: the CMP decoder and the certificate view on arbitrary bytes. A fixed
 * arena on the stack, like an exchange's; every extraCert and issued certificate parsed. */
#include "raproxy/cert.h"
#include "raproxy/cmp.h"

#include <stddef.h>
#include <stdint.h>

#define FUZZ_ARENA_SIZE (64 * 1024)
#define FUZZ_NAME_BUF   256

static void use_cert(struct rp_view v)
{
    struct rp_cert c;
    char name[FUZZ_NAME_BUF];
    if (rp_cert_parse(v.p, v.len, &c) != 0)
        return;
    rp_name_to_string(c.subject, name, sizeof name);
    rp_name_to_string(c.issuer, name, sizeof name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    _Alignas(16) uint8_t mem[FUZZ_ARENA_SIZE];
    struct rp_arena a;
    struct rp_cmp_msg m;
    struct rp_cmp_err e;
    struct rp_view pp;
    char name[FUZZ_NAME_BUF];
    rp_arena_init(&a, mem, sizeof mem);
    if (rp_cmp_decode(data, size, &a, &m, &e) != 0)
        return 0;
    for (size_t i = 0; i < m.n_extra_certs; i++)
        use_cert(m.extra_certs[i]);
    if (m.header.sender.name.p)
        rp_name_to_string(m.header.sender.name, name, sizeof name);
    if (m.body.type == RP_CMP_IP || m.body.type == RP_CMP_CP || m.body.type == RP_CMP_KUP) {
        for (size_t i = 0; i < m.body.rep.n; i++)
            if (m.body.rep.resps[i].cert.p)
                use_cert(m.body.rep.resps[i].cert);
        for (size_t i = 0; i < m.body.rep.n_ca_pubs; i++)
            use_cert(m.body.rep.ca_pubs[i]);
    }
    if (m.body.type == RP_CMP_IR || m.body.type == RP_CMP_CR || m.body.type == RP_CMP_KUR)
        for (size_t i = 0; i < m.body.reqs.n; i++)
            if (m.body.reqs.reqs[i].tmpl.public_key_raw.p)
                rp_crmf_template_spki(&m.body.reqs.reqs[i].tmpl, &a, &pp);
    rp_cmp_protected_part(&m, &a, &pp);
    return 0;
}
