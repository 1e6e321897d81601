/* Delayed-delivery scripts (deliver_store.c has the key names and the contract). Every key
 * carries the hash tag {dd}: the queue's order, the CA's budget and the claim that makes a
 * request go to the CA at most once must change together, atomically, so they share one
 * Redis Cluster slot; that slot's load is bounded by what the CA can take, not by the fleet.
 * Every key a script touches is in KEYS. Times come from Redis TIME (one clock for every
 * replica); numbers are written with string.format('%d') (Lua's default format loses digits
 * above 1e14).
 *
 * Record states (field st of a record): queued, sending, answered, lost, failed, expired —
 * enum ra_dd_state in deliver.h, in that order from 1. */
#include "deliver.h"

#define LUA_NOW                                                                                    \
    "local tm = redis.call('TIME')\n"                                                              \
    "local now_us = tonumber(tm[1]) * 1000000 + tonumber(tm[2])\n"                                 \
    "local now = math.floor(now_us / 1000)\n"

/* code(st): the state's number (0: no record) */
#define LUA_CODES                                                                                  \
    "local codes = {queued = 1, sending = 2, answered = 3, lost = 4, failed = 5, expired = 6}\n"   \
    "local function code(st) return st and codes[st] or 0 end\n"

/* room(kf, kr, max, lease_ms, T, B, token): a lease in the in-flight set (expiring, so a
 * killed replica's share comes back) and a token of the rate bucket (GCRA, µs) -> 1, 0 |
 * 0, -1 (in flight full) | 0, retry_ms (rate) */
#define LUA_ROOM                                                                                   \
    "local function room(kf, kr, max, lease, T, B, token)\n"                                       \
    "  redis.call('ZREMRANGEBYSCORE', kf, '-inf', now)\n"                                          \
    "  if max > 0 and redis.call('ZCARD', kf) >= max then return 0, -1 end\n"                      \
    "  if T > 0 then\n"                                                                            \
    "    local tat = tonumber(redis.call('GET', kr)) or now_us\n"                                  \
    "    if tat < now_us then tat = now_us end\n"                                                  \
    "    local new = tat + T\n"                                                                    \
    "    if new - B * T > now_us then return 0, math.ceil((new - B * T - now_us) / 1000) end\n"    \
    "    redis.call('SET', kr, string.format('%d', new), 'PX',\n"                                  \
    "               string.format('%d', math.ceil((new - now_us) / 1000)))\n"                      \
    "  end\n"                                                                                      \
    "  redis.call('ZADD', kf, string.format('%d', now + lease), token)\n"                          \
    "  return 1, 0\n"                                                                              \
    "end\n"

/* drop_busy(kb, txid): the device's marker goes when it names this transaction */
#define LUA_DROP_BUSY                                                                              \
    "local function drop_busy(kb, txid)\n"                                                         \
    "  if redis.call('GET', kb) == txid then redis.call('DEL', kb) end\n"                          \
    "end\n"

/* KEYS q, p, f, r, t, b; ARGV txid, mode (direct|queue|force), exclusive (1|0), max in
 * flight, lease ms, T µs, burst, token, busy TTL ms, max waiting, record TTL ms, domain,
 * identity, request, body ->
 *   {3, state, answer} the transaction has a record (a retry joins it)
 *   {-4, 0}            the transaction has a record of another domain or identity
 *   {-2, 0}            another certificate request of this identity is in progress
 *   {1, 0}             go: lease and rate token taken (and the identity marked busy)
 *   {2, 0}             queued
 *   {0, retry ms}      direct mode and no room (retry -1: in-flight limit)
 *   {-3, 0}            the queue is full */
const char ra_dd_lua_offer[] = LUA_NOW LUA_CODES LUA_ROOM
    "local st = redis.call('HGET', KEYS[5], 'st')\n"
    "if st then\n"
    "  local o = redis.call('HMGET', KEYS[5], 'dom', 'id')\n"
    "  if o[1] ~= ARGV[12] or o[2] ~= ARGV[13] then return {-4, 0} end\n"
    "  local exp = tonumber(redis.call('HGET', KEYS[5], 'exp'))\n"
    "  if st == 'sending' and exp and exp < now then\n"
    "    st = 'lost'\n"
    "    redis.call('HSET', KEYS[5], 'st', st)\n"
    "    redis.call('HDEL', KEYS[5], 'req', 'body')\n"
    "  end\n"
    "  return {3, code(st), redis.call('HGET', KEYS[5], 'ans') or ''}\n"
    "end\n"
    "local excl = ARGV[3] == '1'\n"
    "if excl and redis.call('EXISTS', KEYS[6]) == 1 then return {-2, 0} end\n"
    "local waiting = redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])\n"
    "local mode = ARGV[2]\n"
    "if mode == 'direct' or (mode == 'queue' and waiting == 0) then\n"
    "  local ok, retry = room(KEYS[3], KEYS[4], tonumber(ARGV[4]), tonumber(ARGV[5]),\n"
    "                         tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8])\n"
    "  if ok == 1 then\n"
    "    if excl then redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[9]) end\n"
    "    return {1, 0}\n"
    "  end\n"
    "  if mode == 'direct' then return {0, retry} end\n"
    "end\n"
    "if waiting >= tonumber(ARGV[10]) then return {-3, 0} end\n"
    "redis.call('HSET', KEYS[5], 'st', 'queued', 't0', string.format('%d', now), 'dom', ARGV[12],\n"
    "           'id', ARGV[13], 'req', ARGV[14], 'body', ARGV[15])\n"
    "redis.call('PEXPIRE', KEYS[5], ARGV[11])\n"
    "redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[1])\n"
    "if excl then redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[11]) end\n"
    "return {2, 0}\n";

/* KEYS f, b; ARGV token, txid -> 1. A request sent directly has its answer (or failed). */
const char ra_dd_lua_release[] = LUA_DROP_BUSY "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                                               "drop_busy(KEYS[2], ARGV[2])\n"
                                               "return 1\n";

/* KEYS q, p, f, t, b; ARGV txid, token, record TTL ms, exclusive, max waiting, domain,
 * identity, request, body -> {2, 0} queued | {-3, 0} full | {0, state} not queueable |
 * {-4, 0} the transaction has a record of another domain or identity (the caller's marker
 * goes).
 * A request the CA did not take (not sent, or answered 5xx): back in the queue — a
 * dispatched one at its old place (the front), a direct one as a new record. */
const char ra_dd_lua_requeue[] = LUA_NOW LUA_CODES LUA_DROP_BUSY
    "redis.call('ZREM', KEYS[3], ARGV[2])\n"
    "local st = redis.call('HGET', KEYS[4], 'st')\n"
    "if st == 'sending' then\n"
    "  redis.call('HSET', KEYS[4], 'st', 'queued')\n"
    "  redis.call('HDEL', KEYS[4], 'exp')\n"
    "  redis.call('ZADD', KEYS[1], redis.call('HGET', KEYS[4], 't0'), ARGV[1])\n"
    "  return {2, 0}\n"
    "end\n"
    "if st then\n"
    "  local o = redis.call('HMGET', KEYS[4], 'dom', 'id')\n"
    "  if o[1] ~= ARGV[6] or o[2] ~= ARGV[7] then\n"
    "    drop_busy(KEYS[5], ARGV[1])\n"
    "    return {-4, 0}\n"
    "  end\n"
    "  return {0, code(st)}\n"
    "end\n"
    "if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then\n"
    "  drop_busy(KEYS[5], ARGV[1])\n"
    "  return {-3, 0}\n"
    "end\n"
    "redis.call('HSET', KEYS[4], 'st', 'queued', 't0', string.format('%d', now), 'dom', ARGV[6],\n"
    "           'id', ARGV[7], 'req', ARGV[8], 'body', ARGV[9])\n"
    "redis.call('PEXPIRE', KEYS[4], ARGV[3])\n"
    "redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[1])\n"
    "if ARGV[4] == '1' then redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[3]) end\n"
    "return {2, 0}\n";

/* KEYS q, f, t, b; ARGV txid, token, record TTL ms, exclusive, domain, identity, request,
 * body -> 2 queued now | 1 it has a record already | 0 not queued (another request of the
 * identity is in progress).
 * Sent behind a queueing offer (or requeue) whose answer came too late, on the same
 * connection, so Redis runs it after that one: its device was answered waiting, so the
 * request must be in the queue. Whatever the late command did is settled: a record it made
 * (or joined) stands; a lease it took for a request the caller never sent goes back, and
 * the request is queued instead; when it never ran (the connection went), it is queued. */
const char ra_dd_lua_settle[] = LUA_NOW
    "redis.call('ZREM', KEYS[2], ARGV[2])\n"
    "if redis.call('EXISTS', KEYS[3]) == 1 then return 1 end\n"
    "if ARGV[4] == '1' then\n"
    "  local owner = redis.call('GET', KEYS[4])\n"
    "  if owner and owner ~= ARGV[1] then return 0 end\n"
    "end\n"
    "redis.call('HSET', KEYS[3], 'st', 'queued', 't0', string.format('%d', now), 'dom', ARGV[5],\n"
    "           'id', ARGV[6], 'req', ARGV[7], 'body', ARGV[8])\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[3])\n"
    "redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[1])\n"
    "if ARGV[4] == '1' then redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[3]) end\n"
    "return 2\n";

/* KEYS q, p, f, r; ARGV max in flight, lease ms, T µs, burst, reservation ms ->
 * {1, 0, txid} the oldest waiting request is this dispatcher's to claim (lease and rate
 * token taken) | {0, 0} none waiting | {0, -1} in-flight limit | {0, retry ms} rate.
 * A reservation not claimed in time (its dispatcher died) goes back to the front. */
const char ra_dd_lua_next[] = LUA_NOW LUA_ROOM
    "local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)\n"
    "for _, m in ipairs(stale) do\n"
    "  redis.call('ZREM', KEYS[2], m)\n"
    "  redis.call('ZADD', KEYS[1], 0, m)\n"
    "end\n"
    "local first = redis.call('ZRANGE', KEYS[1], 0, 0)\n"
    "if #first == 0 then return {0, 0} end\n"
    "local m = first[1]\n"
    "local ok, retry = room(KEYS[3], KEYS[4], tonumber(ARGV[1]), tonumber(ARGV[2]),\n"
    "                       tonumber(ARGV[3]), tonumber(ARGV[4]), 'q:' .. m)\n"
    "if ok == 0 then return {0, retry} end\n"
    "redis.call('ZREM', KEYS[1], m)\n"
    "redis.call('ZADD', KEYS[2], string.format('%d', now + tonumber(ARGV[5])), m)\n"
    "return {1, 0, m}\n";

/* KEYS p, f, t; ARGV txid, lease ms, max wait ms, keep ms ->
 *   {1, t0, domain, identity, request, body}  claimed: state sending until the lease ends
 *   {0, 6, domain, identity}                  waited longer than max wait: expired
 *   {0, state}                                not this dispatcher's (its reservation ended
 *                                             and another took it), or not waiting
 * Only a queued record reserved by this dispatcher is claimed, so a request reaches the CA
 * at most once. */
const char ra_dd_lua_claim[] =
    LUA_NOW LUA_CODES "local mine = redis.call('ZREM', KEYS[1], ARGV[1]) == 1\n"
                      "local st = redis.call('HGET', KEYS[3], 'st')\n"
                      "if not mine or st ~= 'queued' then\n"
                      "  if mine then redis.call('ZREM', KEYS[2], 'q:' .. ARGV[1]) end\n"
                      "  return {0, code(st)}\n"
                      "end\n"
                      "local r = redis.call('HMGET', KEYS[3], 't0', 'dom', 'id', 'req', 'body')\n"
                      "if now - tonumber(r[1]) > tonumber(ARGV[3]) then\n"
                      "  redis.call('HSET', KEYS[3], 'st', 'expired')\n"
                      "  redis.call('HDEL', KEYS[3], 'req', 'body')\n"
                      "  redis.call('PEXPIRE', KEYS[3], ARGV[4])\n"
                      "  redis.call('ZREM', KEYS[2], 'q:' .. ARGV[1])\n"
                      "  return {0, codes.expired, r[2], r[3]}\n"
                      "end\n"
                      "redis.call('HSET', KEYS[3], 'st', 'sending', 'exp',\n"
                      "           string.format('%d', now + tonumber(ARGV[2])))\n"
                      "return {1, tonumber(r[1]), r[2], r[3], r[4], r[5]}\n";

/* KEYS f, t; ARGV txid, lease ms, token -> {1, 2} the lease runs lease ms from now: send it |
 * {0, state} not to be sent (lost: its lease ended before it was handed to the CA — marked
 * so here when no poll did — or no record). */
const char ra_dd_lua_extend[] =
    LUA_NOW LUA_CODES "local r = redis.call('HMGET', KEYS[2], 'st', 'exp')\n"
                      "if r[1] ~= 'sending' then return {0, code(r[1])} end\n"
                      "if tonumber(r[2]) < now then\n"
                      "  redis.call('HSET', KEYS[2], 'st', 'lost')\n"
                      "  redis.call('HDEL', KEYS[2], 'req', 'body', 'exp')\n"
                      "  return {0, codes.lost}\n"
                      "end\n"
                      "local exp = string.format('%d', now + tonumber(ARGV[2]))\n"
                      "redis.call('HSET', KEYS[2], 'exp', exp)\n"
                      "redis.call('ZADD', KEYS[1], exp, ARGV[3])\n"
                      "return {1, codes.sending}\n";

/* KEYS q, t, b; ARGV txid, domain, identity -> {1, 1} cancelled | {0, state} not (not
 * queued, or another requester's). A reservation a dispatcher holds for it finds no record
 * at its claim and gives its lease back. */
const char ra_dd_lua_cancel[] =
    LUA_CODES LUA_DROP_BUSY "local r = redis.call('HMGET', KEYS[2], 'st', 'dom', 'id')\n"
                            "if r[2] ~= ARGV[2] or r[3] ~= ARGV[3] then return {0, 0} end\n"
                            "if r[1] ~= 'queued' then return {0, code(r[1])} end\n"
                            "redis.call('DEL', KEYS[2])\n"
                            "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                            "drop_busy(KEYS[3], ARGV[1])\n"
                            "return {1, codes.queued}\n";

/* KEYS f, t, b; ARGV txid, state (answered|lost|failed|expired), answer, keep ms, token ->
 * 1. The CA answered (or will never answer) a dispatched request: the answer waits for the
 * device's poll, the lease and the device's marker go. A record no longer sending (a poll
 * found its lease ended and told its device: lost) keeps its state: its device may have
 * started again, and an answer now would make two requests of one device at the CA. */
const char ra_dd_lua_finish[] =
    LUA_DROP_BUSY "if redis.call('HGET', KEYS[2], 'st') == 'sending' then\n"
                  "  redis.call('HSET', KEYS[2], 'st', ARGV[2])\n"
                  "  if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'ans', ARGV[3]) end\n"
                  "  redis.call('HDEL', KEYS[2], 'req', 'body', 'exp')\n"
                  "  redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
                  "end\n"
                  "redis.call('ZREM', KEYS[1], ARGV[5])\n"
                  "drop_busy(KEYS[3], ARGV[1])\n"
                  "return 1\n";

/* KEYS t, q; ARGV txid, max wait ms, domain, identity -> {state, answer, domain, identity}
 * ({0, ''} without a record, {-4, ''} for a record of another domain or identity: the
 * transaction is bound to its requester for its whole life, whatever admission remembers). A
 * sending record whose lease ended is lost (its dispatcher died: never resent), a queued one past
 * max wait expired (and leaves the queue); domain and identity come with those so that the caller
 * can drop the device's marker. */
const char ra_dd_lua_poll[] = LUA_NOW LUA_CODES
    "local r = redis.call('HMGET', KEYS[1], 'st', 'exp', 't0', 'ans', 'dom', 'id')\n"
    "local st = r[1]\n"
    "if not st then return {0, ''} end\n"
    "if r[5] ~= ARGV[3] or r[6] ~= ARGV[4] then return {-4, ''} end\n"
    "local changed = false\n"
    "if st == 'sending' and tonumber(r[2]) < now then st, changed = 'lost', true end\n"
    "if st == 'queued' and now - tonumber(r[3]) > tonumber(ARGV[2]) then\n"
    "  st, changed = 'expired', true\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "end\n"
    "if changed then\n"
    "  redis.call('HSET', KEYS[1], 'st', st)\n"
    "  redis.call('HDEL', KEYS[1], 'req', 'body', 'exp')\n"
    "  return {code(st), '', r[5], r[6]}\n"
    "end\n"
    "return {code(st), r[4] or ''}\n";
