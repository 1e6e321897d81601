/* Device connections per client address, process-wide (every loop accepts from the same
 * addresses: SO_REUSEPORT spreads one client's connections over all loops). A chained hash
 * under one mutex: taken twice per connection (accept, close), never on the request path.
 * The hash is keyed with a random seed so that an attacker choosing addresses cannot make
 * the chains long. */
#include "net_int.h"

#include "raproxy/err.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define IPCAP_BUCKETS_MIN 1024u
#define IPCAP_ADDR_LEN    16u /* IPv4 as v4-mapped IPv6 */

struct net_ipcap_entry {
    uint8_t addr[IPCAP_ADDR_LEN];
    unsigned count;
    struct net_ipcap_entry *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct net_ipcap_entry **buckets;
static size_t nbuckets, nentries;
static uint64_t seed;

static void addr_key(const struct sockaddr *sa, uint8_t key[IPCAP_ADDR_LEN])
{
    memset(key, 0, IPCAP_ADDR_LEN);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, IPCAP_ADDR_LEN);
    }
}

static size_t slot(const uint8_t key[IPCAP_ADDR_LEN], size_t n)
{
    uint64_t h = seed;
    for (unsigned i = 0; i < IPCAP_ADDR_LEN; i++) {
        h ^= key[i];
        h *= 0x100000001b3ull; /* FNV-1a prime, seeded: not guessable from outside */
    }
    h ^= h >> 29;
    return (size_t)h & (n - 1);
}

/* Double the table when chains average more than one entry. Under the lock. */
static int grow(void)
{
    size_t n = nbuckets ? nbuckets * 2 : IPCAP_BUCKETS_MIN;
    struct net_ipcap_entry **nb = calloc(n, sizeof *nb);
    if (!nb)
        return RP_E_NOMEM;
    if (!nbuckets && getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = (uint64_t)(uintptr_t)nb ^ 0xcbf29ce484222325ull;
    for (size_t i = 0; i < nbuckets; i++) {
        for (struct net_ipcap_entry *e = buckets[i], *nx; e; e = nx) {
            nx = e->next;
            size_t s = slot(e->addr, n);
            e->next = nb[s];
            nb[s] = e;
        }
    }
    free(buckets);
    buckets = nb;
    nbuckets = n;
    return RP_OK;
}

int net_ipcap_acquire(const struct sockaddr *sa, unsigned cap, struct net_ipcap_entry **out)
{
    uint8_t key[IPCAP_ADDR_LEN];
    addr_key(sa, key);
    int rc = RP_OK;
    pthread_mutex_lock(&lock);
    if ((!nbuckets || nentries >= nbuckets) && grow() != RP_OK && !nbuckets) {
        rc = RP_E_NOMEM;
        goto out;
    }
    size_t s = slot(key, nbuckets);
    struct net_ipcap_entry *e = buckets[s];
    while (e && memcmp(e->addr, key, IPCAP_ADDR_LEN) != 0)
        e = e->next;
    if (e && cap && e->count >= cap) {
        rc = RP_E_HTTP_OVERLOADED;
        goto out;
    }
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) {
            rc = RP_E_NOMEM;
            goto out;
        }
        memcpy(e->addr, key, IPCAP_ADDR_LEN);
        e->next = buckets[s];
        buckets[s] = e;
        nentries++;
    }
    e->count++;
    *out = e;
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

void net_ipcap_release(struct net_ipcap_entry *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&lock);
    if (--e->count == 0) {
        struct net_ipcap_entry **pp = &buckets[slot(e->addr, nbuckets)];
        while (*pp != e)
            pp = &(*pp)->next;
        *pp = e->next;
        nentries--;
        free(e);
    }
    pthread_mutex_unlock(&lock);
}
