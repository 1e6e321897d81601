/* The YAML walk: YAML text → struct rp_config through libcyaml.
 *
 * libcyaml stops at the first problem and its messages carry no line numbers, so the file is
 * first loaded with libyaml into a node tree and walked against the same cyaml schema
 * (config_schema.c): every unknown key, wrong type and bad enum is reported with its line,
 * and the walk re-emits the document in the shape libcyaml expects (`tls: off` and
 * "20/s burst 40" limits have no direct libcyaml schema). Only a document that passed the walk
 * reaches cyaml_load_data(). */
#include "config_internal.h"

#include <cyaml/cyaml.h>
#include <yaml.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A configuration is a few KiB; anything this large is a mistake (or an attack). */
#define MAX_FILE_BYTES (4u << 20)
/* Aliases can multiply a small document into a huge tree: bound the nodes walked. */
#define MAX_NODES 100000u
/* Room for libcyaml's own messages, should it still refuse a walked document. */
#define CYAML_LOG_CAPTURE 1024

struct outbuf {
    unsigned char *p;
    size_t len, cap;
};

struct walk {
    struct core_cfg *x;
    yaml_document_t *doc;
    yaml_emitter_t em;
    int em_failed;
    unsigned nodes;
    struct outbuf out;
};

static int on_emit(void *data, unsigned char *buf, size_t size)
{
    struct outbuf *o = data;
    if (o->len + size > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + size)
            cap *= 2;
        unsigned char *n = realloc(o->p, cap);
        if (!n)
            return 0;
        o->p = n;
        o->cap = cap;
    }
    memcpy(o->p + o->len, buf, size);
    o->len += size;
    return 1;
}

static void emit(struct walk *w, yaml_event_t *ev, int initialized)
{
    if (!initialized) {
        w->em_failed = 1;
        return;
    }
    if (w->em_failed) {
        yaml_event_delete(ev);
        return;
    }
    /* the emitter owns (and frees) the event even when it fails */
    if (!yaml_emitter_emit(&w->em, ev))
        w->em_failed = 1;
}

static void emit_scalar(struct walk *w, const char *s, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    emit(w, &ev,
         yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1,
                                      style));
}

static void emit_collection(struct walk *w, yaml_event_type_t type)
{
    yaml_event_t ev;
    int ok = 0;
    switch (type) {
    case YAML_MAPPING_START_EVENT:
        ok = yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        break;
    case YAML_MAPPING_END_EVENT:
        ok = yaml_mapping_end_event_initialize(&ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
        ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
        break;
    case YAML_SEQUENCE_END_EVENT:
        ok = yaml_sequence_end_event_initialize(&ev);
        break;
    default:
        break;
    }
    emit(w, &ev, ok);
}

static unsigned node_line(const yaml_node_t *n)
{
    return (unsigned)n->start_mark.line + 1;
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* `key:` with nothing, `~` or `null` (unquoted): YAML's null, taken as "not set". */
static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = scalar(n);
    return !*s || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

static void type_error(struct walk *w, const char *path, const char *want, const yaml_node_t *n)
{
    if (n->type == YAML_SCALAR_NODE)
        core_cfg_problem_at(w->x, node_line(n), path, "expected %s, got '%.*s'", want, QUOTE_MAX,
                            scalar(n));
    else
        core_cfg_problem_at(w->x, node_line(n), path, "expected %s, got a %s", want,
                            n->type == YAML_MAPPING_NODE ? "mapping" : "sequence");
}

static void walk_value(struct walk *w, yaml_node_t *n, const cyaml_schema_value_t *s,
                       const char *path);

static void emit_u32(struct walk *w, uint32_t v)
{
    char num[16];
    snprintf(num, sizeof num, "%u", v);
    emit_scalar(w, num, YAML_PLAIN_SCALAR_STYLE);
}

/* The rate's count (its key already emitted), then period_s: P, for libcyaml. */
static void emit_rate_value(struct walk *w, uint32_t rate, uint32_t period_s)
{
    emit_u32(w, rate);
    emit_scalar(w, core_cfg_limit_fields[RP_CFGX_LIMIT_PERIOD].key, YAML_PLAIN_SCALAR_STYLE);
    emit_u32(w, period_s);
}

#define RATE_FORMS "N, \"N/s\", \"N/min\", \"N/h\" or \"N/day\""

/* `rate: 3/day` inside a limit mapping (the key is emitted by walk_mapping's caller). */
static void walk_rate(struct walk *w, const yaml_node_t *v, const char *path)
{
    uint32_t rate, period_s;
    const char *s = v->type == YAML_SCALAR_NODE ? scalar(v) : NULL;
    if (!s || core_cfg_parse_rate(s, &rate, &period_s) != 0) {
        type_error(w, path, RATE_FORMS, v);
        return;
    }
    emit_rate_value(w, rate, period_s);
}

static void walk_limit_string(struct walk *w, const yaml_node_t *v, const char *path)
{
    uint32_t rate, period_s, burst;
    int has_burst;
    if (core_cfg_parse_limit(scalar(v), &rate, &period_s, &burst, &has_burst) != 0) {
        core_cfg_problem_at(
            w->x, node_line(v), path,
            "expected a mapping {rate: N/s, burst: M} or \"N/s [burst M]\" (units s, min, "
            "h, day), got '%.*s'",
            QUOTE_MAX, scalar(v));
        return;
    }
    char sub[RP_CFGX_PATH_MAX];
    emit_collection(w, YAML_MAPPING_START_EVENT);
    emit_scalar(w, core_cfg_limit_fields[RP_CFGX_LIMIT_RATE].key, YAML_PLAIN_SCALAR_STYLE);
    emit_rate_value(w, rate, period_s);
    core_cfg_join(sub, path, ".", "rate");
    core_cfg_add(w->x, sub, node_line(v));
    if (has_burst) {
        emit_scalar(w, core_cfg_limit_fields[RP_CFGX_LIMIT_BURST].key, YAML_PLAIN_SCALAR_STYLE);
        emit_u32(w, burst);
        core_cfg_join(sub, path, ".", "burst");
        core_cfg_add(w->x, sub, node_line(v));
    }
    emit_collection(w, YAML_MAPPING_END_EVENT);
}

static void unknown_key(struct walk *w, const yaml_node_t *k, const char *path,
                        const cyaml_schema_field_t *fields)
{
    char known[512];
    size_t len = 0;
    known[0] = 0;
    for (const cyaml_schema_field_t *f = fields; f->key && len < sizeof known; f++) {
        int n = snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", f->key);
        if (n < 0)
            break;
        len += (size_t)n;
    }
    core_cfg_problem_at(w->x, node_line(k), path, "unknown key (expected one of: %s)", known);
}

/* A mapping key and its value. Returns after emitting both, or neither. */
static void walk_field(struct walk *w, const yaml_node_t *k, yaml_node_t *v,
                       const cyaml_schema_field_t *f, const char *path)
{
    int is_mapping = f->value.type == CYAML_MAPPING;
    if (is_null(v))
        return;
    struct core_cfg_ent *e = core_cfg_add(w->x, path, node_line(k));
    if (is_mapping && v->type == YAML_SCALAR_NODE &&
        f->value.mapping.fields == core_cfg_tls_fields) {
        /* `tls: off` — plain HTTP on this listener; libcyaml never sees the key */
        int on;
        if (core_cfg_parse_bool(scalar(v), &on) != 0 || on)
            type_error(w, path, "`off` or a mapping with cert and key", v);
        else if (e)
            e->marks |= RP_CFGX_TLS_OFF;
        return;
    }
    emit_scalar(w, scalar(k), k->data.scalar.style);
    if (is_mapping && v->type == YAML_SCALAR_NODE &&
        f->value.mapping.fields == core_cfg_limit_fields)
        walk_limit_string(w, v, path);
    else if (f == &core_cfg_limit_fields[RP_CFGX_LIMIT_RATE])
        walk_rate(w, v, path);
    else
        walk_value(w, v, &f->value, path);
}

static void walk_mapping(struct walk *w, yaml_node_t *n, const cyaml_schema_field_t *fields,
                         const char *path)
{
    if (n->type != YAML_MAPPING_NODE) {
        type_error(w, path, "a mapping", n);
        return;
    }
    uint64_t seen = 0; /* one bit per field: RP_CFGX_FIELDS_MAX */
    emit_collection(w, YAML_MAPPING_START_EVENT);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        if (!k || !v)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            core_cfg_problem_at(w->x, node_line(k), path, "mapping keys must be plain words");
            continue;
        }
        char child[RP_CFGX_PATH_MAX];
        core_cfg_join(child, path, ".", scalar(k));
        unsigned i = 0;
        while (fields[i].key && strcmp(fields[i].key, scalar(k)) != 0)
            i++;
        if (&fields[i] == &core_cfg_limit_fields[RP_CFGX_LIMIT_PERIOD]) {
            /* internal: the unit comes with the rate ("3/day") */
            core_cfg_problem_at(
                w->x, node_line(k), child,
                "unknown key (expected one of: rate, burst; the unit goes with the rate, "
                "e.g. rate: 3/day)");
        } else if (!fields[i].key) {
            unknown_key(w, k, child, fields);
        } else if (seen & (1ull << i)) {
            core_cfg_problem_at(w->x, node_line(k), child, "duplicate key");
        } else {
            seen |= 1ull << i;
            walk_field(w, k, v, &fields[i], child);
        }
    }
    emit_collection(w, YAML_MAPPING_END_EVENT);
}

static void walk_sequence(struct walk *w, yaml_node_t *n, const cyaml_schema_value_t *entry,
                          const char *path)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        type_error(w, path, "a sequence", n);
        return;
    }
    unsigned idx = 0;
    emit_collection(w, YAML_SEQUENCE_START_EVENT);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, idx++) {
        yaml_node_t *v = yaml_document_get_node(w->doc, *it);
        if (!v)
            continue;
        char child[RP_CFGX_PATH_MAX];
        core_cfg_key(child, "%s[%u]", path, idx);
        core_cfg_add(w->x, child, node_line(v));
        walk_value(w, v, entry, child);
    }
    emit_collection(w, YAML_SEQUENCE_END_EVENT);
}

static void walk_enum(struct walk *w, const yaml_node_t *n, const cyaml_schema_value_t *s,
                      const char *path)
{
    char names[256];
    size_t len = 0;
    for (uint32_t i = 0; i < s->enumeration.count; i++) {
        if (strcmp(scalar(n), s->enumeration.strings[i].str) == 0) {
            emit_scalar(w, scalar(n), n->data.scalar.style);
            return;
        }
        int k = snprintf(names + len, sizeof names - len, "%s%s", i ? "|" : "",
                         s->enumeration.strings[i].str);
        if (k > 0 && (size_t)k < sizeof names - len)
            len += (size_t)k;
    }
    names[len] = 0;
    core_cfg_problem_at(w->x, node_line(n), path, "must be one of %s, got '%.*s'", names, QUOTE_MAX,
                        scalar(n));
}

static void walk_scalar(struct walk *w, yaml_node_t *n, const cyaml_schema_value_t *s,
                        const char *path)
{
    uint32_t u;
    int b;
    switch (s->type) {
    case CYAML_STRING:
        emit_scalar(w, scalar(n), n->data.scalar.style);
        break;
    case CYAML_UINT: {
        uint32_t max = s->data_size >= 4 ? UINT32_MAX : (uint32_t)((1ul << (8 * s->data_size)) - 1);
        if (core_cfg_parse_u32(scalar(n), max, &u) != 0)
            type_error(w, path, "an unsigned integer", n);
        else
            emit_scalar(w, scalar(n), YAML_PLAIN_SCALAR_STYLE);
        break;
    }
    case CYAML_BOOL:
        /* canonical spelling: libcyaml reads any unknown word as true */
        if (core_cfg_parse_bool(scalar(n), &b) != 0)
            type_error(w, path, "true or false", n);
        else
            emit_scalar(w, b ? "true" : "false", YAML_PLAIN_SCALAR_STYLE);
        break;
    case CYAML_ENUM:
        walk_enum(w, n, s, path);
        break;
    default:
        core_cfg_problem_at(w->x, node_line(n), path, "internal: unsupported schema type");
    }
}

static void walk_value(struct walk *w, yaml_node_t *n, const cyaml_schema_value_t *s,
                       const char *path)
{
    if (++w->nodes > MAX_NODES) {
        if (w->nodes == MAX_NODES + 1)
            core_cfg_problem_at(w->x, node_line(n), path, "document too large (over %u nodes)",
                                MAX_NODES);
        return;
    }
    switch (s->type) {
    case CYAML_MAPPING:
        walk_mapping(w, n, s->mapping.fields, path);
        break;
    case CYAML_SEQUENCE:
        walk_sequence(w, n, s->sequence.entry, path);
        break;
    default:
        if (n->type != YAML_SCALAR_NODE)
            type_error(w, path,
                       s->type == CYAML_UINT   ? "an unsigned integer"
                       : s->type == CYAML_BOOL ? "true or false"
                                               : "a string",
                       n);
        else
            walk_scalar(w, n, s, path);
    }
}

/* Emit the stream around the walked document. */
static void walk_document(struct walk *w, yaml_node_t *root)
{
    yaml_event_t ev;
    emit(w, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
    emit(w, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
    core_cfg_add(w->x, "", 1);
    walk_value(w, root, &core_cfg_top_schema, "");
    emit(w, &ev, yaml_document_end_event_initialize(&ev, 1));
    emit(w, &ev, yaml_stream_end_event_initialize(&ev));
}

/* ------------------------------------------------------------- reading */

static char *read_file(struct core_cfg *x, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        core_cfg_problem_at(x, 1, "", "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE_BYTES + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf) {
        x->oom = 1;
        return NULL;
    }
    if (err || n > MAX_FILE_BYTES) {
        core_cfg_problem_at(x, 1, "", err ? "read error" : "larger than %u bytes", MAX_FILE_BYTES);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

struct cyaml_capture {
    char msg[CYAML_LOG_CAPTURE];
    size_t len;
};

static void on_cyaml_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    struct cyaml_capture *c = ctx;
    (void)level;
    if (c->len + 1 >= sizeof c->msg)
        return;
    int n = vsnprintf(c->msg + c->len, sizeof c->msg - c->len, fmt, args);
    if (n > 0)
        c->len = c->len + (size_t)n < sizeof c->msg ? c->len + (size_t)n : sizeof c->msg - 1;
    for (char *p = c->msg; *p; p++)
        if (*p == '\n')
            *p = ' '; /* one problem, one line */
}

/* Parse with libyaml, walk, and hand the re-emitted document to libcyaml. */
static struct rp_config *parse(struct core_cfg *x, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct walk w = {.x = x, .doc = &doc};
    struct rp_config *cfg = NULL;
    int have_doc = 0, have_em = 0;

    if (!yaml_parser_initialize(&parser)) {
        x->oom = 1;
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        core_cfg_problem_at(x, (unsigned)parser.problem_mark.line + 1, "", "YAML syntax: %s%s%s",
                            parser.problem ? parser.problem : "error", parser.context ? " " : "",
                            parser.context ? parser.context : "");
        goto out;
    }
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        core_cfg_problem_at(x, 1, "", "empty configuration");
        goto out;
    }
    if (!yaml_emitter_initialize(&w.em)) {
        x->oom = 1;
        goto out;
    }
    have_em = 1;
    yaml_emitter_set_output(&w.em, on_emit, &w.out);
    yaml_emitter_set_width(&w.em, -1);
    yaml_emitter_set_unicode(&w.em, 1);
    walk_document(&w, root);
    if (x->problems || x->oom)
        goto out;
    if (w.em_failed) {
        core_cfg_problem_at(x, 1, "", "internal: re-emitting the document failed: %s",
                            w.em.problem ? w.em.problem : "out of memory");
        goto out;
    }

    struct cyaml_capture cap = {.len = 0};
    const cyaml_config_t ccfg = {
        .log_fn = on_cyaml_log,
        .log_ctx = &cap,
        .mem_fn = core_cfg_cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_DEFAULT,
    };
    cyaml_err_t err = cyaml_load_data(w.out.p, w.out.len, &ccfg, &core_cfg_top_schema,
                                      (cyaml_data_t **)&cfg, NULL);
    if (err != CYAML_OK) {
        if (err == CYAML_ERR_OOM)
            x->oom = 1;
        else
            core_cfg_problem_at(x, 1, "", "libcyaml: %s: %s", cyaml_strerror(err), cap.msg);
        cfg = NULL;
    }
out:
    if (have_em)
        yaml_emitter_delete(&w.em);
    free(w.out.p);
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return cfg;
}

/* The file named by x->file, parsed into a configuration (NULL after a reported problem). */
struct rp_config *core_cfg_parse_file(struct core_cfg *x)
{
    size_t len = 0;
    char *text = read_file(x, x->file, &len);
    if (!text)
        return NULL;
    struct rp_config *cfg = parse(x, text, len);
    free(text);
    return cfg;
}
