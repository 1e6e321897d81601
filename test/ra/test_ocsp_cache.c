/* The OCSP response cache: hits, expiry at min(nextUpdate, max_age), LRU bound, several
 * threads at once. */
#include "raproxy/arena.h"
#include "raproxy/err.h"
#include "raproxy/ocsp_cache.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define NOW 1800000000

static struct rp_view v(const char *s)
{
    return rp_view_str(s);
}

static struct rp_ocsp_cache *cache(uint32_t max_entries, uint32_t max_age_s)
{
    struct rp_ocsp_cache *c = NULL;
    cr_assert_eq(rp_ocsp_cache_new(&c, max_entries, max_age_s), RP_OK);
    return c;
}

/* 1 when key is cached with exactly `want` at time now. */
static int has(struct rp_ocsp_cache *c, const char *key, const char *want, int64_t now)
{
    uint8_t mem[1024];
    struct rp_arena a;
    struct rp_view out;
    rp_arena_init(&a, mem, sizeof mem);
    int rc = rp_ocsp_cache_get(c, v(key), now, &a, &out);
    if (rc == 1 && want)
        cr_assert(rp_view_eq(out, v(want)), "%s: wrong value", key);
    return rc;
}

Test(ocsp_cache, stored_response_is_a_hit_until_next_update)
{
    struct rp_ocsp_cache *c = cache(10, 3600);
    cr_assert_eq(rp_ocsp_cache_put(c, v("certid-1"), v("response-1"), NOW + 60, NOW), 1);
    cr_assert_eq(has(c, "certid-1", "response-1", NOW), 1);
    cr_assert_eq(has(c, "certid-1", "response-1", NOW + 59), 1);
    cr_assert_eq(has(c, "certid-2", NULL, NOW), 0);
    cr_assert_eq(has(c, "certid-1", NULL, NOW + 60), 0, "expired at nextUpdate");
    cr_assert_eq(rp_ocsp_cache_count(c), 0, "an expired entry is dropped when met");
    rp_ocsp_cache_free(c);
}

Test(ocsp_cache, max_age_bounds_a_distant_next_update)
{
    struct rp_ocsp_cache *c = cache(10, 30);
    cr_assert_eq(rp_ocsp_cache_put(c, v("k"), v("r"), NOW + 86400, NOW), 1);
    cr_assert_eq(has(c, "k", "r", NOW + 29), 1);
    cr_assert_eq(has(c, "k", NULL, NOW + 30), 0);
    rp_ocsp_cache_free(c);
}

Test(ocsp_cache, expired_or_oversized_answers_are_not_stored)
{
    struct rp_ocsp_cache *c = cache(10, 30);
    cr_assert_eq(rp_ocsp_cache_put(c, v("k"), v("r"), NOW, NOW), 0);
    cr_assert_eq(rp_ocsp_cache_put(c, v("k"), v("r"), NOW - 5, NOW), 0);
    static uint8_t big[RP_OCSP_CACHE_MAX_VALUE + 1];
    cr_assert_eq(rp_ocsp_cache_put(c, v("k"), rp_view_make(big, sizeof big), NOW + 5, NOW), 0);
    cr_assert_eq(rp_ocsp_cache_put(c, rp_view_make(big, 0), v("r"), NOW + 5, NOW), 0);
    cr_assert_eq(rp_ocsp_cache_count(c), 0);
    rp_ocsp_cache_free(c);
}

Test(ocsp_cache, least_recently_used_goes_first)
{
    struct rp_ocsp_cache *c = cache(3, 3600);
    rp_ocsp_cache_put(c, v("a"), v("A"), NOW + 100, NOW);
    rp_ocsp_cache_put(c, v("b"), v("B"), NOW + 100, NOW);
    rp_ocsp_cache_put(c, v("c"), v("C"), NOW + 100, NOW);
    cr_assert_eq(has(c, "a", "A", NOW), 1); /* a is now the most recent */
    rp_ocsp_cache_put(c, v("d"), v("D"), NOW + 100, NOW);
    cr_assert_eq(rp_ocsp_cache_count(c), 3);
    cr_assert_eq(has(c, "b", NULL, NOW), 0);
    cr_assert_eq(has(c, "a", "A", NOW), 1);
    cr_assert_eq(has(c, "c", "C", NOW), 1);
    cr_assert_eq(has(c, "d", "D", NOW), 1);
    rp_ocsp_cache_free(c);
}

Test(ocsp_cache, a_newer_answer_replaces_the_old_one)
{
    struct rp_ocsp_cache *c = cache(3, 3600);
    rp_ocsp_cache_put(c, v("a"), v("old"), NOW + 100, NOW);
    rp_ocsp_cache_put(c, v("a"), v("newer"), NOW + 200, NOW + 50);
    cr_assert_eq(rp_ocsp_cache_count(c), 1);
    cr_assert_eq(has(c, "a", "newer", NOW + 150), 1);
    rp_ocsp_cache_free(c);
}

Test(ocsp_cache, shrinking_evicts_and_growing_rehashes)
{
    struct rp_ocsp_cache *c = cache(100, 3600);
    char k[16];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        rp_ocsp_cache_put(c, v(k), v(k), NOW + 100, NOW);
    }
    rp_ocsp_cache_configure(c, 10, 3600);
    cr_assert_eq(rp_ocsp_cache_count(c), 10);
    cr_assert_eq(has(c, "key-99", "key-99", NOW), 1);
    cr_assert_eq(has(c, "key-0", NULL, NOW), 0);
    rp_ocsp_cache_configure(c, 5000, 3600);
    for (int i = 0; i < 3000; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        rp_ocsp_cache_put(c, v(k), v(k), NOW + 100, NOW);
    }
    cr_assert_eq(rp_ocsp_cache_count(c), 3000);
    cr_assert_eq(has(c, "key-1234", "key-1234", NOW), 1);
    rp_ocsp_cache_clear(c);
    cr_assert_eq(rp_ocsp_cache_count(c), 0);
    rp_ocsp_cache_free(c);
}

Test(ocsp_cache, hit_that_does_not_fit_the_arena_is_an_error)
{
    struct rp_ocsp_cache *c = cache(3, 3600);
    rp_ocsp_cache_put(c, v("a"), v("0123456789abcdef0123456789abcdef"), NOW + 100, NOW);
    uint8_t mem[16];
    struct rp_arena a;
    struct rp_view out;
    rp_arena_init(&a, mem, sizeof mem);
    cr_assert_eq(rp_ocsp_cache_get(c, v("a"), NOW, &a, &out), RP_E_ARENA);
    rp_ocsp_cache_free(c);
}

Test(ocsp_cache, bad_bounds_are_refused)
{
    struct rp_ocsp_cache *c = NULL;
    cr_assert_eq(rp_ocsp_cache_new(&c, 0, 10), RP_E_INVAL);
    cr_assert_eq(rp_ocsp_cache_new(&c, 10, 0), RP_E_INVAL);
    cr_assert_null(c);
}

Test(ocsp_cache, shared_instance_is_one_and_follows_new_bounds)
{
    struct rp_ocsp_cache *a = rp_ocsp_cache_shared(5, 60);
    cr_assert_not_null(a);
    for (int i = 0; i < 5; i++) {
        char k[8];
        snprintf(k, sizeof k, "s%d", i);
        rp_ocsp_cache_put(a, v(k), v("x"), NOW + 10, NOW);
    }
    struct rp_ocsp_cache *b = rp_ocsp_cache_shared(2, 60);
    cr_assert_eq(a, b);
    cr_assert_eq(rp_ocsp_cache_count(b), 2);
}

#define THREADS    4
#define ROUNDS     2000
#define KEYS       200
#define MAX_SHARED 50

static void *hammer(void *arg)
{
    struct rp_ocsp_cache *c = arg;
    uint8_t mem[256];
    struct rp_arena a;
    for (int i = 0; i < ROUNDS; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", (i * 7 + (int)(uintptr_t)&a % 13) % KEYS);
        struct rp_view out;
        rp_arena_init(&a, mem, sizeof mem);
        if (rp_ocsp_cache_get(c, v(k), NOW, &a, &out) == 1) {
            if (!rp_view_eq(out, v(k)))
                return (void *)1;
        } else {
            rp_ocsp_cache_put(c, v(k), v(k), NOW + 100, NOW);
        }
    }
    return NULL;
}

Test(ocsp_cache, several_threads_share_it)
{
    struct rp_ocsp_cache *c = cache(MAX_SHARED, 3600);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, c), 0);
    for (int i = 0; i < THREADS; i++) {
        void *res;
        pthread_join(t[i], &res);
        cr_assert_null(res, "a thread read a value that is not its key's");
    }
    cr_assert_leq(rp_ocsp_cache_count(c), MAX_SHARED);
    rp_ocsp_cache_free(c);
}
