/* Unit tests for replicator/worker.c: backoff bounds, stream ids, the trim point, reply parsing. */
#include "replicator/worker.c"
#include "replicator/apply.c"
#include "replicator/settle.c"
#include "replicator/sites.c"
#include "replicator/watermark.c"
#include "replicator/rebuild.c"
#include "replicator/repair.c"
#include "replicator/gc.c"

#include "test.h"

static void
test_backoff(void)
{
    uint64_t r;
    int a, bad = 0;

    /* the ceiling doubles per attempt up to retry_max; the delay never leaves [0, ceiling] */
    for (a = 1; a <= 70; a++) {
        int64_t ceiling = a > 7 ? 60000 : 1000LL << (a - 1);

        if (ceiling > 60000) {
            ceiling = 60000;
        }
        for (r = 0; r < 2000; r += 7) {
            int64_t d = worker_backoff_ms(1000, 60000, a, r * 0x9E3779B97F4A7C15ULL);

            bad += d < 0 || d > ceiling;
        }
        bad += worker_backoff_ms(1000, 60000, a, (uint64_t)ceiling) != ceiling;
        bad += worker_backoff_ms(1000, 60000, a, (uint64_t)ceiling + 1) != 0;
    }
    ok(bad == 0, "backoff within [0, min(max, base*2^(n-1))] for attempts 1..70");
    ok(worker_backoff_ms(1000, 60000, 1, 1000) == 1000 &&
           worker_backoff_ms(1000, 60000, 2, 2000) == 2000 &&
           worker_backoff_ms(1000, 60000, 3, 4000) == 4000 &&
           worker_backoff_ms(1000, 60000, 7, 60000) == 60000,
       "ceilings 1s, 2s, 4s ... capped at 60s");
    ok(worker_backoff_ms(1000, 60000, 1, UINT64_MAX) <= 1000, "any random value stays in bounds");
    ok(worker_backoff_ms(INT64_MAX / 2, INT64_MAX, 100, UINT64_MAX - 1) >= 0,
       "no overflow with huge settings");
    ok(worker_backoff_ms(50, 200, 0, 123) <= 50 && worker_backoff_ms(50, 200, -5, 123) <= 50,
       "attempt 0 or negative: the base ceiling");
    ok(worker_backoff_ms(0, 0, 3, 99) == 0, "zero base: no delay");
    {
        /* full jitter spreads: not every draw lands at the same point */
        int64_t lo = INT64_MAX, hi = -1;

        for (r = 1; r < 1000; r++) {
            int64_t d = worker_backoff_ms(1000, 60000, 4, r * 0x2545F4914F6CDD1DULL);

            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        ok(lo < 1000 && hi > 7000, "jitter covers the range (%lld..%lld of 0..8000)", (long long)lo,
           (long long)hi);
    }
}

static void
test_stream_ids(void)
{
    struct stream_id a, b;
    char text[STREAM_ID_TEXT_MAX];

    ok(stream_id_parse("1700000000000-3", 15, &a) == 0 && a.ms == 1700000000000ULL && a.seq == 3,
       "parse ms-seq");
    ok(stream_id_parse("1700000000000", 13, &b) == 0 && b.seq == 0, "parse ms alone");
    ok(stream_id_parse("17x-1", 5, &b) != 0 && stream_id_parse("1-", 2, &b) != 0 &&
           stream_id_parse("", 0, &b) != 0,
       "bad ids refused");
    ok(stream_id_parse("18446744073709551615-18446744073709551615", 41, &b) == 0 &&
           b.ms == UINT64_MAX && b.seq == UINT64_MAX,
       "largest id");
    stream_id_format(a, text);
    ok_str(text, "1700000000000-3", "format");
    b = stream_id_next(a);
    ok(b.ms == a.ms && b.seq == 4, "next: seq + 1");
    a.seq = UINT64_MAX;
    b = stream_id_next(a);
    ok(b.ms == a.ms + 1 && b.seq == 0, "next: carries into ms");
    a = (struct stream_id){5, 1};
    b = (struct stream_id){5, 2};
    ok(stream_id_cmp(a, b) < 0 && stream_id_cmp(b, a) > 0 && stream_id_cmp(a, a) == 0,
       "compare by seq");
    b = (struct stream_id){4, 9};
    ok(stream_id_cmp(b, a) < 0, "compare by ms first");
}

static void
test_trim_minid(void)
{
    struct trim_group g[3];
    struct stream_id m;

    memset(g, 0, sizeof(g));
    ok(trim_minid(g, 0, &m) != 0, "no groups: nothing is trimmed");
    g[0].delivered = (struct stream_id){100, 5};
    ok(trim_minid(g, 1, &m) == 0 && m.ms == 100 && m.seq == 6,
       "one group, nothing pending: trim through its last-delivered id");
    g[0].pending = 2;
    g[0].min_pending = (struct stream_id){90, 0};
    ok(trim_minid(g, 1, &m) == 0 && m.ms == 90 && m.seq == 0,
       "pending entries: keep from the smallest pending id");
    g[1].delivered = (struct stream_id){50, 0};
    g[2].delivered = (struct stream_id){200, 0};
    g[2].pending = 1;
    g[2].min_pending = (struct stream_id){150, 0};
    ok(trim_minid(g, 3, &m) == 0 && m.ms == 50 && m.seq == 1,
       "several groups: the minimum (a slow group holds the stream)");
    g[1].delivered = (struct stream_id){0, 0};
    ok(trim_minid(g, 3, &m) == 0 && m.ms == 0 && m.seq == 1,
       "a group that read nothing keeps everything");
}

static void
test_show(void)
{
    struct pool p;
    char longkey[400];

    pool_init(&p);
    ok_str(show(&p, SLICE_LIT("dir/a b\xc3\xa9")), "dir/a b\xc3\xa9", "printable keys as they are");
    ok_str(show(&p, SLICE_LIT("a\nb\\c\x01")), "a\\x0ab\\x5cc\\x01",
           "control bytes and backslash escaped (no forged log lines)");
    memset(longkey, 'k', sizeof(longkey));
    ok(strlen(show(&p, slice_make(longkey, sizeof(longkey)))) == SHOW_MAX + 3,
       "long keys cut with '...'");
    pool_deinit(&p);
}

/* --- reply parsing, on a worker without Redis --------------------------------------------- */

static redisReply *
rstr(const char *s)
{
    redisReply *r = calloc(1, sizeof(*r));

    r->type = REDIS_REPLY_STRING;
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

static redisReply *
rarr(size_t n, ...)
{
    redisReply *r = calloc(1, sizeof(*r));
    va_list ap;
    size_t i;

    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof(*r->element));
    va_start(ap, n);
    for (i = 0; i < n; i++) {
        r->element[i] = va_arg(ap, redisReply *);
    }
    va_end(ap);
    return r;
}

static redisReply *
rnil(void)
{
    redisReply *r = calloc(1, sizeof(*r));

    r->type = REDIS_REPLY_NIL;
    return r;
}

static void
rfree(redisReply *r)
{
    size_t i;

    if (r->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < r->elements; i++) {
            rfree(r->element[i]);
        }
        free(r->element);
    }
    free(r->str);
    free(r);
}

static redisReply *
put_entry(const char *id, const char *key)
{
    return rarr(2, rstr(id),
                rarr(10, rstr("op"), rstr("put"), rstr("bucket"), rstr("photos"), rstr("key"),
                     rstr(key), rstr("stamp"), rstr("0191f2a3b4c50001.a"), rstr("parts"),
                     rstr("")));
}

static void
test_ingest(void)
{
    struct event_base *evb = event_base_new();
    struct repl_conf cf;
    struct worker w;
    struct site site;
    struct rpeer p;
    struct entry *e;
    redisReply *r;
    char last[STREAM_ID_TEXT_MAX] = "", consumer[] = "c1";

    memset(&cf, 0, sizeof(cf));
    memset(&w, 0, sizeof(w));
    memset(&p, 0, sizeof(p));
    memset(&site, 0, sizeof(site));
    site.id = "b";
    cf.consumer = consumer;
    w.evb = evb;
    w.cf = &cf;
    w.cap = 100;
    w.stopping = 1; /* acks and dead letters fail at once (no Redis): entries are dropped */
    w.stop_notified = 1;
    p.w = &w;
    p.site = &site;
    TAILQ_INIT(&p.held);
    TAILQ_INIT(&p.ready);

    r = rarr(1, rarr(2, rstr("s3tee:log"),
                     rarr(3, put_entry("5-1", "a"), put_entry("5-2", "b\nc"),
                          rarr(2, rstr("5-3"), rnil()))));
    ok(ingest_read(&p, r, last) == 3, "three entries in the answer");
    ok_str(last, "5-3", "the last id is the backlog cursor");
    ok(p.nheld == 2 && p.nready == 2,
       "two entries ready; the deleted one acknowledged (dropped here)");
    e = TAILQ_FIRST(&p.ready);
    ok(e != NULL && strcmp(e->id, "5-1") == 0 && e->valid && e->m.op == MUT_PUT &&
           slice_eq(e->m.key, SLICE_LIT("a")) && e->npairs == 5,
       "entry decoded, fields kept for the dead letter");
    e = TAILQ_NEXT(e, ready_link);
    ok(e != NULL && strcmp(e->show_key, "b\\x0ac") == 0, "a key for logs is escaped");
    last[0] = '\0';
    ok(ingest_read(&p, r, last) == 3 && p.nheld == 2 && p.nready == 2,
       "the same entries again (backlog re-read, own claim): not held twice");
    rfree(r);
    r = rnil();
    ok(ingest_read(&p, r, last) == 0, "nil answer (BLOCK timed out): nothing");
    rfree(r);
    r = rarr(1, rarr(2, rstr("s3tee:log"),
                     rarr(1, rarr(2, rstr("6-1"),
                                  rarr(4, rstr("op"), rstr("put"), rstr("bucket"), rstr("x"))))));
    ok(ingest_read(&p, r, last) == 1 && p.nheld == 2,
       "a malformed entry goes to the dead letters (dropped here: no Redis)");
    rfree(r);

    /* per-key order: 7-1 and 7-3 name key "k"; 7-3 waits until 7-1 is applied */
    r = rarr(
        1, rarr(2, rstr("s3tee:log"),
                rarr(3, put_entry("7-3", "k"), put_entry("7-2", "other"), put_entry("7-1", "k"))));
    ingest_read(&p, r, last);
    rfree(r);
    while (!TAILQ_EMPTY(&p.ready)) { /* drop the earlier entries */
        e = TAILQ_FIRST(&p.ready);
        if (strncmp(e->id, "7-", 2) == 0) {
            break;
        }
        entry_free(e);
    }
    e = next_startable(&p);
    ok(e != NULL && strcmp(e->id, "7-2") == 0,
       "7-3 is blocked by the older 7-1 of the same key; 7-2 (another key) may start");
    {
        struct entry *first = NULL, *x;

        TAILQ_FOREACH(x, &p.held, held_link)
        {
            if (strcmp(x->id, "7-1") == 0) {
                first = x;
            }
        }
        TAILQ_REMOVE(&p.ready, e, ready_link);
        p.nready--;
        e->state = ES_APPLYING;
        e = next_startable(&p);
        ok(e == first, "then 7-1, the oldest entry of key k");
        TAILQ_REMOVE(&p.ready, e, ready_link);
        p.nready--;
        e->state = ES_APPLYING;
        ok(next_startable(&p) == NULL, "7-3 waits while 7-1 is applying");
        first->state = ES_BACKOFF;
        ok(next_startable(&p) == NULL, "... and while 7-1 waits to retry");
        first->state = ES_ACKING;
        e = next_startable(&p);
        ok(e != NULL && strcmp(e->id, "7-3") == 0, "7-3 starts once 7-1 was applied");
        first->state = ES_APPLYING; /* entry_free must not look for it in the ready list */
    }
    while (!TAILQ_EMPTY(&p.held)) {
        entry_free(TAILQ_FIRST(&p.held));
    }
    event_base_free(evb);
}

int
main(void)
{
    test_backoff();
    test_stream_ids();
    test_trim_minid();
    test_show();
    test_ingest();
    return done_testing();
}
