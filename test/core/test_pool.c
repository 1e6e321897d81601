/* Per-thread block pools (src/core/pool.c): a freed block serves the next allocation of its
 * class on the same thread, a class keeps a bounded number of blocks, threads do not share. */
#include "raproxy/pool.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

Test(pool, sizes_round_up_to_their_class_and_large_ones_are_exact)
{
    cr_expect_eq(rp_pool_size(0), RP_POOL_MIN_BLOCK);
    cr_expect_eq(rp_pool_size(1), RP_POOL_MIN_BLOCK);
    cr_expect_eq(rp_pool_size(RP_POOL_MIN_BLOCK), RP_POOL_MIN_BLOCK);
    cr_expect_eq(rp_pool_size(RP_POOL_MIN_BLOCK + 1), 2 * RP_POOL_MIN_BLOCK);
    cr_expect_eq(rp_pool_size(5000), 8192);
    cr_expect_eq(rp_pool_size(RP_POOL_MAX_BLOCK), RP_POOL_MAX_BLOCK);
    cr_expect_eq(rp_pool_size(RP_POOL_MAX_BLOCK + 1), RP_POOL_MAX_BLOCK + 1);
}

Test(pool, a_freed_block_serves_the_next_request_of_its_class)
{
    char *a = rp_pool_get(300);
    cr_assert_not_null(a);
    memset(a, 0xab, rp_pool_size(300)); /* the whole class is usable (ASan would see) */
    rp_pool_put(a, 300);
    char *b = rp_pool_get(400); /* same class: 512 */
    cr_expect_eq(b, a);
    char *c = rp_pool_get(200); /* another class: not the 512-byte block */
    cr_expect_neq(c, a);
    rp_pool_put(b, 400);
    rp_pool_put(c, 200);
    rp_pool_put(NULL, 100); /* like free(NULL) */
}

Test(pool, a_class_keeps_a_bounded_number_of_blocks)
{
    /* 64 KiB blocks: RP_POOL_CLASS_BYTES / 64 KiB of them are kept, the next one is freed */
    const size_t sz = 64u << 10;
    const unsigned keep = RP_POOL_CLASS_BYTES / (64u << 10);
    void *blk[8];
    cr_assert_lt(keep, 8);
    for (unsigned i = 0; i <= keep; i++)
        cr_assert_not_null(blk[i] = rp_pool_get(sz));
    for (unsigned i = 0; i <= keep; i++)
        rp_pool_put(blk[i], sz);
    /* the kept ones come back last-in first-out; the one over the bound went to free() */
    for (unsigned i = keep; i-- > 0;)
        cr_expect_eq(rp_pool_get(sz), blk[i], "kept block %u", i);
    for (unsigned i = 0; i < keep; i++)
        rp_pool_put(blk[i], sz);
    /* a block larger than the biggest class is plain malloc/free */
    void *big = rp_pool_get(RP_POOL_MAX_BLOCK + 1);
    cr_assert_not_null(big);
    rp_pool_put(big, RP_POOL_MAX_BLOCK + 1);
}

static void *get_one(void *arg)
{
    void **out = arg;
    *out = rp_pool_get(1000);
    rp_pool_put(*out, 1000); /* kept in this thread's pool, freed when the thread ends */
    return NULL;
}

Test(pool, threads_do_not_share_their_free_blocks)
{
    void *mine = rp_pool_get(1000);
    cr_assert_not_null(mine);
    rp_pool_put(mine, 1000); /* in this thread's pool now */
    void *theirs = NULL;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, get_one, &theirs), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_expect_neq(theirs, mine, "another thread got this thread's pooled block");
    cr_expect_eq(rp_pool_get(1000), mine);
    rp_pool_put(mine, 1000);
}
