/* One intrusive doubly linked list (like h2o's linklist.h and libuv's queue.h): embed a
 * struct rp_list_node in the element, keep a struct rp_list_node as the head, and get the
 * element back with container_of. An unlinked node points to nothing, so "is it linked?"
 * is one test and unlinking twice is harmless. */
#ifndef RAPROXY_LIST_H
#define RAPROXY_LIST_H

#include <stdbool.h>
#include <stddef.h>

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

struct rp_list_node {
    struct rp_list_node *prev, *next;
};

static inline void rp_list_init(struct rp_list_node *head)
{
    head->prev = head->next = head;
}

static inline bool rp_list_empty(const struct rp_list_node *head)
{
    return head->next == head;
}

static inline bool rp_list_linked(const struct rp_list_node *n)
{
    return n->next != NULL;
}

/* Append n at the tail of head's list. */
static inline void rp_list_push(struct rp_list_node *head, struct rp_list_node *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static inline void rp_list_unlink(struct rp_list_node *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

/* The first node, unlinked; NULL when empty. */
static inline struct rp_list_node *rp_list_shift(struct rp_list_node *head)
{
    if (rp_list_empty(head))
        return NULL;
    struct rp_list_node *n = head->next;
    rp_list_unlink(n);
    return n;
}

/* Move every node of from to the tail of to; from ends empty. */
static inline void rp_list_splice(struct rp_list_node *to, struct rp_list_node *from)
{
    if (rp_list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    rp_list_init(from);
}

/* Iterate safely against unlinking the current node: for (RP_LIST_EACH(n, nx, head)). */
#define RP_LIST_EACH(n, nx, head)                                                                  \
    n = (head)->next, nx = n->next;                                                                \
    n != (head);                                                                                   \
    n = nx, nx = n->next

#endif
