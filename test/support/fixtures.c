#include "fixtures.h"

#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARGV_MAX 64

/* Wait for every "address: 127.0.0.1:PORT" of the configuration file besides `port`: loops
 * bind their listeners one after another, so the first one accepting does not mean the
 * plain-HTTP or admin one does yet (a test that connected to them at once got ECONNREFUSED
 * under ASan on a busy machine). */
static int wait_other_listeners(const char *cfg, int port)
{
    size_t len = 0;
    char *text = (char *)rpt_read_file(cfg, &len);
    if (!text)
        return 0; /* written by the test a moment ago; raproxy read it, so it exists */
    int rc = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && rc == 0;
         line = strtok_r(NULL, "\n", &save)) {
        const char *a = strstr(line, "address");
        const char *h = a ? strstr(a, "127.0.0.1:") : NULL;
        if (!h)
            continue;
        long other = strtol(h + strlen("127.0.0.1:"), NULL, 10);
        if (other > 0 && other < 65536 && other != port)
            rc = rpt_wait_port((int)other, 10000);
    }
    free(text);
    return rc;
}

int rpt_raproxy_start(struct rpt_proc *p, const char *dir, const char *cfg, int port)
{
    char bin[512];
    snprintf(bin, sizeof bin, "%s/raproxy", rpt_bin());
    snprintf(p->log, sizeof p->log, "%s/raproxy.log", dir);
    const char *argv[] = {bin, "--config", cfg, NULL};
    if (rpt_spawn(p, argv) != 0)
        return -1;
    if (rpt_wait_port(port, 10000) != 0 || wait_other_listeners(cfg, port) != 0) {
        rpt_stop(p, 9, 1000);
        return -1;
    }
    return 0;
}

int rpt_mockca_start(struct rpt_proc *p, const char *dir, int port, const char *trusted,
                     const char *const *extra)
{
    const char *pki = rpt_pki();
    if (!pki)
        return -1;
    static char portbuf[16], srvcert[512], srvkey[512], rsp[512], chain[512];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(srvcert, sizeof srvcert, "%s/ca/srv.pem", pki);
    snprintf(srvkey, sizeof srvkey, "%s/ca/srv.key", pki);
    snprintf(rsp, sizeof rsp, "%s/ca/issued.pem", pki);
    snprintf(chain, sizeof chain, "%s/ca/chain.pem", pki);
    const char *argv[ARGV_MAX] = {"openssl",      "cmp",   "-port",          portbuf,
                                  "-srv_cert",    srvcert, "-srv_key",       srvkey,
                                  "-srv_trusted", trusted, "-rsp_cert",      rsp,
                                  "-rsp_capubs",  chain,   "-srv_untrusted", chain};
    int n = 16;
    for (int i = 0; extra && extra[i] && n < ARGV_MAX - 1; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    snprintf(p->log, sizeof p->log, "%s/mockca-%d.log", dir, port);
    if (rpt_spawn(p, argv) != 0)
        return -1;
    if (rpt_wait_port(port, 10000) != 0) {
        rpt_stop(p, 9, 1000);
        return -1;
    }
    return 0;
}

int rpt_device(const char *dir, int port, const char *path, const char *cmd, const char *cert,
               const char *key, const char *extracerts, const char *certout,
               const char *const *extra, const char *log)
{
    const char *pki = rpt_pki();
    if (!pki)
        return -1;
    char server[64], newkey[512], trusted[512], tlsca[512], untrusted[512];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    snprintf(newkey, sizeof newkey, "%s/ca/issued.key", pki);
    snprintf(trusted, sizeof trusted, "%s/operator/root.pem", pki);
    snprintf(untrusted, sizeof untrusted, "%s/ca/chain.pem", pki);
    snprintf(tlsca, sizeof tlsca, "%s/tls/ca.pem", pki);
    const char *argv[ARGV_MAX] = {"openssl",   "cmp",          "-cmd",  cmd,
                                  "-server",   server,         "-path", path,
                                  "-tls_used", "-tls_trusted", tlsca,   "-tls_host",
                                  "localhost", "-trusted",     trusted, "-untrusted",
                                  untrusted,   "-msg_timeout", "20",    "-total_timeout",
                                  "60"};
    int n = 21;
    if (cert) {
        argv[n++] = "-cert";
        argv[n++] = cert;
    }
    if (key) {
        argv[n++] = "-key";
        argv[n++] = key;
    }
    if (extracerts) {
        argv[n++] = "-extracerts";
        argv[n++] = extracerts;
    }
    if (strcmp(cmd, "ir") == 0 || strcmp(cmd, "cr") == 0 || strcmp(cmd, "kur") == 0 ||
        strcmp(cmd, "p10cr") == 0) {
        /* no -subject: openssl asks for the subject of the signing certificate, the
         * device's own identity (the template policy binds it) */
        argv[n++] = "-newkey";
        argv[n++] = newkey;
    }
    if (certout) {
        argv[n++] = "-certout";
        argv[n++] = certout;
    }
    for (int i = 0; extra && extra[i] && n < ARGV_MAX - 1; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    (void)dir;
    return rpt_run(argv, 90000, log);
}

#define REDIS_WAIT_MS 5000

int rpt_redis_start(struct rpt_redis *r, const char *pass)
{
    char portstr[16];
    if (!r->port)
        r->port = rpt_free_port();
    snprintf(portstr, sizeof portstr, "%d", r->port);
    const char *argv[] = {
        "redis-server", "--save", "",       "--appendonly", "no",
        "--port",       portstr,  "--bind", "127.0.0.1",    pass ? "--requirepass" : NULL,
        pass,           NULL};
    char log[sizeof r->p.log];
    memcpy(log, r->p.log, sizeof log); /* a log path set by the caller is kept */
    memset(&r->p, 0, sizeof r->p);
    memcpy(r->p.log, log, sizeof log);
    snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", r->port);
    if (rpt_spawn(&r->p, argv) != 0)
        return -1;
    return rpt_wait_port(r->port, REDIS_WAIT_MS);
}

void rpt_redis_stop(struct rpt_redis *r)
{
    if (r->p.pid > 0) {
        kill(r->p.pid, SIGCONT);
        rpt_stop(&r->p, SIGKILL, REDIS_WAIT_MS);
    }
}

#define SOFTHSM_TOOL_MS 30000

void rpt_softhsm_tokendir(const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/tokens", dir);
}

int rpt_softhsm_init(const char *dir, const char *label, const char *pin)
{
    char conf[600], tokens[600], text[1400], log[600];
    rpt_softhsm_tokendir(dir, tokens, sizeof tokens);
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", dir);
    snprintf(log, sizeof log, "%s/softhsm-init.log", dir);
    int n = snprintf(text, sizeof text,
                     "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                     tokens);
    if (mkdir(tokens, 0700) != 0 || rpt_write_file(conf, text, (size_t)n) != 0 ||
        setenv("SOFTHSM2_CONF", conf, 1) != 0)
        return -1;
    const char *argv[] = {"softhsm2-util",
                          "--init-token",
                          "--free",
                          "--label",
                          label,
                          "--so-pin",
                          pin,
                          "--pin",
                          pin,
                          NULL};
    return rpt_run(argv, SOFTHSM_TOOL_MS, log) == 0 ? 0 : -1;
}

int rpt_softhsm_import(const char *dir, const char *token, const char *pin, const char *key_pem,
                       const char *label, const char *id_hex)
{
    char log[600];
    snprintf(log, sizeof log, "%s/softhsm-import-%s.log", dir, label);
    const char *argv[] = {"softhsm2-util", "--import", key_pem, "--token", token, "--label",
                          label,           "--id",     id_hex,  "--pin",   pin,   NULL};
    return rpt_run(argv, SOFTHSM_TOOL_MS, log) == 0 ? 0 : -1;
}

int rpt_softhsm_keygen(const char *dir, const char *token, const char *pin, const char *key_type,
                       const char *label, const char *id_hex, const char *pub_der)
{
    char log[600];
    snprintf(log, sizeof log, "%s/softhsm-keygen-%s.log", dir, label);
    const char *gen[] = {"pkcs11-tool",
                         "--module",
                         RPT_SOFTHSM_MODULE,
                         "--token-label",
                         token,
                         "--login",
                         "--pin",
                         pin,
                         "--keypairgen",
                         "--key-type",
                         key_type,
                         "--label",
                         label,
                         "--id",
                         id_hex,
                         NULL};
    if (rpt_run(gen, SOFTHSM_TOOL_MS, log) != 0)
        return -1;
    const char *rd[] = {"pkcs11-tool",
                        "--module",
                        RPT_SOFTHSM_MODULE,
                        "--token-label",
                        token,
                        "--read-object",
                        "--type",
                        "pubkey",
                        "--id",
                        id_hex,
                        "-o",
                        pub_der,
                        NULL};
    return rpt_run(rd, SOFTHSM_TOOL_MS, log) == 0 ? 0 : -1;
}
