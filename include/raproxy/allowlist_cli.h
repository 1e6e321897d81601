/* `raproxy allowlist …`: manage a domain's serial allowlist in Redis (the set admission reads,
 * key from rp_admit_allowlist_key: P allow:{dom:<D>}).
 *
 *   raproxy allowlist import --redis URL --domain D [--key-prefix P] FILE|-
 *       one serial per line; blank lines and #comments skipped; surrounding blanks trimmed.
 *       Pipelined SADD in batches; prints "imported N (M new, S skipped) in T s".
 *   raproxy allowlist export --redis URL --domain D [--key-prefix P] [--output FILE]
 *       every serial, one per line (SSCAN, so Redis is never blocked), to stdout or FILE.
 *   raproxy allowlist count  --redis URL --domain D [--key-prefix P]
 *
 * argv[0] is "allowlist" (main passes argv + 1). Returns the exit status: 0, 1 on a Redis or
 * file error, 2 on a usage error. */
#ifndef RAPROXY_ALLOWLIST_CLI_H
#define RAPROXY_ALLOWLIST_CLI_H

int rp_allowlist_cli(int argc, char **argv);

#endif
