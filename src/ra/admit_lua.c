/* Admission scripts. Each touches the keys of one hash slot only (Redis Cluster), reads the
 * time from Redis TIME so that every replica shares one clock, and writes integers with
 * string.format('%d') because Lua's default number formatting loses digits above 1e14.
 * Replies are arrays of integers: {code, value}. */
#include "raproxy/admit.h"
#include "raproxy/limiter.h"

/* Shared GCRA body. KEYS[k] bucket, T = emission interval µs, B = burst. Sets `ok`, `retry`
 * (ms). */
#define LUA_NOW                                                                                    \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
#define LUA_GCRA(k)                                                                                \
    "local tat = tonumber(redis.call('GET', KEYS[" k "])) or now\n"                                \
    "if tat < now then tat = now end\n"                                                            \
    "local new = tat + T\n"                                                                        \
    "local allow_at = new - B * T\n"                                                               \
    "local ok, retry = 1, 0\n"                                                                     \
    "if allow_at > now then\n"                                                                     \
    "  ok, retry = 0, math.ceil((allow_at - now) / 1000)\n"                                        \
    "else\n"                                                                                       \
    "  redis.call('SET', KEYS[" k "], string.format('%d', new), 'PX',\n"                           \
    "             string.format('%d', math.ceil((new - now) / 1000)))\n"                           \
    "end\n"
#define LUA_REFUND(k)                                                                              \
    "local tat = tonumber(redis.call('GET', KEYS[" k "]))\n"                                       \
    "if tat then\n"                                                                                \
    "  local new = tat - T\n"                                                                      \
    "  if new <= now then redis.call('DEL', KEYS[" k "])\n"                                        \
    "  else redis.call('SET', KEYS[" k "], string.format('%d', new), 'PX',\n"                      \
    "                  string.format('%d', math.ceil((new - now) / 1000))) end\n"                  \
    "end\n"

/* KEYS[1] bucket; ARGV[1] T µs, ARGV[2] burst -> {1, 0} admitted | {0, retry_ms} refused */
const char rp_admit_lua_gcra[] =
    "local T = tonumber(ARGV[1])\n"
    "local B = tonumber(ARGV[2])\n" LUA_NOW LUA_GCRA("1") "return {ok, retry}\n";

/* KEYS[1] bucket; ARGV[1] T µs -> 1 */
const char rp_admit_lua_gcra_refund[] =
    "local T = tonumber(ARGV[1])\n" LUA_NOW LUA_REFUND("1") "return 1\n";

/* KEYS[1] device bucket, KEYS[2] nonce; ARGV[1] T µs (0: no quota), ARGV[2] burst,
 * ARGV[3] nonce TTL ms -> {1, 0} | {-1, 0} replayed | {0, retry_ms} over quota.
 * A request refused for quota forgets its nonce: the device may resend the same message. */
const char rp_admit_lua_device[] =
    "if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then return {-1, 0} end\n"
    "local T = tonumber(ARGV[1])\n"
    "local B = tonumber(ARGV[2])\n"
    "if T == 0 then return {1, 0} end\n" LUA_NOW LUA_GCRA(
        "1") "if ok == 0 then redis.call('DEL', KEYS[2]) end\n"
             "return {ok, retry}\n";

/* KEYS[1] device bucket, KEYS[2] nonce; ARGV[1] T µs (0: no quota) -> 1 */
const char rp_admit_lua_device_undo[] =
    "redis.call('DEL', KEYS[2])\n"
    "local T = tonumber(ARGV[1])\n"
    "if T == 0 then return 1 end\n" LUA_NOW LUA_REFUND("1") "return 1\n";

/* KEYS[1] transaction; ARGV[1] serial, ARGV[2] start|continue|check, ARGV[3] state,
 * ARGV[4] TTL ms -> {1, created} | {-2, 0} owned by another serial | {-3, 0} unknown.
 * A use lengthens the entry to the TTL, never shortens it (rp_admit_txn_keep). */
const char rp_admit_lua_txn[] = "local owner = redis.call('HGET', KEYS[1], 's')\n"
                                "if owner and owner ~= ARGV[1] then return {-2, 0} end\n"
                                "if not owner then\n"
                                "  if ARGV[2] == 'continue' then return {-3, 0} end\n"
                                "  if ARGV[2] == 'check' then return {1, 0} end\n"
                                "  redis.call('HSET', KEYS[1], 's', ARGV[1], 'st', ARGV[3])\n"
                                "  redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
                                "  return {1, 1}\n"
                                "end\n"
                                "if ARGV[2] ~= 'check' then\n"
                                "  redis.call('HSET', KEYS[1], 'st', ARGV[3])\n"
                                "  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then\n"
                                "    redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
                                "  end\n"
                                "end\n"
                                "return {1, 0}\n";

/* KEYS[1] transaction; ARGV[1] serial -> 1 if it was deleted */
const char rp_admit_lua_txn_undo[] = "if redis.call('HGET', KEYS[1], 's') == ARGV[1] then\n"
                                     "  return redis.call('DEL', KEYS[1])\n"
                                     "end\n"
                                     "return 0\n";

/* KEYS[1] failed-MAC counter; ARGV[1] lock-out threshold -> {1, 0} | {-4, ms left} locked */
const char rp_admit_lua_mac_lock[] =
    "local n = tonumber(redis.call('GET', KEYS[1])) or 0\n"
    "if n >= tonumber(ARGV[1]) then return {-4, redis.call('PTTL', KEYS[1])} end\n"
    "return {1, 0}\n";

/* KEYS[1] failed-MAC counter; ARGV[1] window ms -> {failures in the window, 0}. The window
 * starts with the first failure and is not extended by later ones. */
const char rp_admit_lua_mac_fail[] = "local n = redis.call('INCR', KEYS[1])\n"
                                     "if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
                                     "return {n, 0}\n";

/* KEYS[1] allowlist set, KEYS[2] claim; ARGV[1] serial, ARGV[2] claiming transaction (hex
 * txid), ARGV[3] claim TTL ms -> {1, 1} claimed now | {1, 0} already this transaction's |
 * {0, 0} not allowed (never listed, consumed, or claimed by another transaction). Check and
 * claim are one script: of concurrent requests of one serial exactly one claims it. */
const char rp_admit_lua_claim[] = "if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then\n"
                                  "  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])\n"
                                  "  return {1, 1}\n"
                                  "end\n"
                                  "if redis.call('GET', KEYS[2]) == ARGV[2] then\n"
                                  "  redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
                                  "  return {1, 0}\n"
                                  "end\n"
                                  "return {0, 0}\n";

/* KEYS[1] allowlist set, KEYS[2] claim; ARGV[1] serial, ARGV[2] transaction, ARGV[3]
 * consume|release|keep, ARGV[4] TTL ms -> {1, 0} settled | {0, 0} not this transaction's.
 * A claim that expires unsettled (an RA gone mid-transaction) leaves the serial consumed:
 * one certificate too few is an operator's retry, one too many is not repairable. */
const char rp_admit_lua_settle[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {0, 0} end\n"
    "if ARGV[3] == 'keep' then\n"
    "  redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
    "  return {1, 0}\n"
    "end\n"
    "if ARGV[3] == 'release' then redis.call('SADD', KEYS[1], ARGV[1]) end\n"
    "redis.call('DEL', KEYS[2])\n"
    "return {1, 0}\n";
