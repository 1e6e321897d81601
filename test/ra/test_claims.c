/* allowlist_consume for a file allowlist (src/ra/claims.c): claims, settlement, the state
 * file across a "restart" (the table closed and opened again), concurrent claims. */
#include "ra/ra.h"

#include "raproxy/admit.h"
#include "raproxy/err.h"
#include "support.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 8

static struct rp_view v(const char *s)
{
    return rp_view_str(s);
}

Test(claims, a_serial_is_claimed_by_one_transaction_and_settled_by_its_answer)
{
    char *dir = rpt_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/claims.state", dir);
    struct ra_claims *c;
    cr_assert_eq(ra_claims_open(path, &c, NULL), RP_OK);
    enum ra_claim how = RA_CLAIM_NONE;
    cr_assert_eq(ra_claims_claim(c, v("SN1"), v("txn-a"), &how), RP_OK);
    cr_expect_eq(how, RA_CLAIM_CREATED);
    cr_assert_eq(ra_claims_claim(c, v("SN1"), v("txn-a"), &how), RP_OK);
    cr_expect_eq(how, RA_CLAIM_JOINED, "a retry of the transaction");
    cr_expect_eq(ra_claims_claim(c, v("SN1"), v("txn-b"), &how), RP_E_NOT_AUTHORIZED);
    ra_claims_settle(c, v("SN1"), v("txn-b"), RP_ADMIT_RELEASE); /* not its claim: no-op */
    cr_expect_eq(ra_claims_claim(c, v("SN1"), v("txn-b"), &how), RP_E_NOT_AUTHORIZED);
    ra_claims_settle(c, v("SN1"), v("txn-a"), RP_ADMIT_RELEASE); /* the CA refused */
    cr_assert_eq(ra_claims_claim(c, v("SN1"), v("txn-b"), &how), RP_OK);
    ra_claims_settle(c, v("SN1"), v("txn-b"), RP_ADMIT_KEEP); /* waiting */
    cr_expect_eq(ra_claims_claim(c, v("SN1"), v("txn-c"), &how), RP_E_NOT_AUTHORIZED);
    ra_claims_settle(c, v("SN1"), v("txn-b"), RP_ADMIT_CONSUME);
    cr_expect_eq(ra_claims_claim(c, v("SN1"), v("txn-b"), &how), RP_E_NOT_AUTHORIZED,
                 "consumed, even for its own transaction");
    /* an unsettled claim (the process dies with the request at the CA) stays */
    cr_assert_eq(ra_claims_claim(c, v("SN2"), v("txn-d"), &how), RP_OK);
    cr_assert_eq(ra_claims_claim(c, v("SN3"), v("txn-e"), &how), RP_OK);
    ra_claims_settle(c, v("SN3"), v("txn-e"), RP_ADMIT_RELEASE);
    ra_claims_close(c);
    cr_assert_eq(ra_claims_open(path, &c, NULL), RP_OK);
    cr_expect_eq(ra_claims_claim(c, v("SN1"), v("txn-f"), &how), RP_E_NOT_AUTHORIZED);
    cr_expect_eq(ra_claims_claim(c, v("SN2"), v("txn-f"), &how), RP_E_NOT_AUTHORIZED);
    cr_expect_eq(ra_claims_claim(c, v("SN2"), v("txn-d"), &how), RP_OK, "its poll continues");
    cr_expect_eq(how, RA_CLAIM_JOINED);
    cr_expect_eq(ra_claims_claim(c, v("SN3"), v("txn-f"), &how), RP_OK, "released before");
    ra_claims_close(c);
    /* compacted on open: one line per live serial */
    cr_assert_eq(ra_claims_open(path, &c, NULL), RP_OK);
    ra_claims_close(c);
    cr_expect_eq(rpt_file_count(path, "\n"), 3, "SN1 consumed, SN2 and SN3 claimed");
    rpt_rmdir(dir);
    free(dir);
}

Test(claims, snapshots_naming_one_state_file_share_one_table)
{
    char *dir = rpt_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/claims.state", dir);
    struct ra_claims *a, *b;
    cr_assert_eq(ra_claims_open(path, &a, NULL), RP_OK);
    cr_assert_eq(ra_claims_open(path, &b, NULL), RP_OK);
    cr_expect_eq(a, b);
    enum ra_claim how;
    cr_assert_eq(ra_claims_claim(a, v("SN1"), v("txn-a"), &how), RP_OK);
    cr_expect_eq(ra_claims_claim(b, v("SN1"), v("txn-b"), &how), RP_E_NOT_AUTHORIZED);
    ra_claims_close(a);
    cr_expect_eq(ra_claims_claim(b, v("SN1"), v("txn-b"), &how), RP_E_NOT_AUTHORIZED);
    ra_claims_close(b);
    cr_expect_neq(ra_claims_open("/nonexistent/dir/claims.state", &a, NULL), RP_OK);
    rpt_rmdir(dir);
    free(dir);
}

struct racer {
    struct ra_claims *c;
    char txid[16];
    int won;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    enum ra_claim how;
    r->won = ra_claims_claim(r->c, v("SN-RACE"), v(r->txid), &how) == RP_OK;
    return NULL;
}

Test(claims, concurrent_claims_of_one_serial_have_one_winner)
{
    char *dir = rpt_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/claims.state", dir);
    struct ra_claims *c;
    cr_assert_eq(ra_claims_open(path, &c, NULL), RP_OK);
    struct racer r[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        r[i] = (struct racer){.c = c};
        snprintf(r[i].txid, sizeof r[i].txid, "txn-%d", i);
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    int won = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        won += r[i].won;
    }
    cr_expect_eq(won, 1);
    ra_claims_close(c);
    rpt_rmdir(dir);
    free(dir);
}
