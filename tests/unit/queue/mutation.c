/* Unit tests for queue/mutation.c: stream field/value pairs, round trips, refusals. */
#include "queue/mutation.h"

#include "test.h"

/* Encodes M and decodes the pairs again into OUT; returns mutation_decode()'s result. */
static int
round_trip(const struct mutation *m, struct mutation *out, size_t *npairs)
{
    const char *argv[2 * MUTATION_NFIELDS];
    size_t argvlen[2 * MUTATION_NFIELDS], i;
    static struct slice f[2 * MUTATION_NFIELDS];
    static char scratch[64];

    *npairs = mutation_encode(m, argv, argvlen, scratch);
    for (i = 0; i < 2 * *npairs; i++) {
        f[i] = slice_make(argv[i], argvlen[i]);
    }
    return mutation_decode(f, *npairs, out);
}

static int
same(const struct mutation *a, const struct mutation *b)
{
    return a->op == b->op && slice_eq(a->bucket, b->bucket) && slice_eq(a->key, b->key) &&
           slice_eq(a->stamp, b->stamp) && slice_eq(a->vv, b->vv) && slice_eq(a->etag, b->etag) &&
           a->size == b->size && slice_eq(a->tags, b->tags) && slice_eq(a->parts, b->parts) &&
           a->time_ms == b->time_ms;
}

/* Decodes the NULL-terminated FIELD, VALUE, ... list; returns mutation_decode()'s result. */
static int
decode_list(const char *const *kv, struct mutation *out)
{
    struct slice f[32];
    size_t n = 0;

    while (kv[n] != NULL) {
        f[n] = slice_cstr(kv[n]);
        n++;
    }
    return mutation_decode(f, n / 2, out);
}

int
main(void)
{
    static const char binkey[] = "dir one/line\nbreak \xff\xfe\x80 tab\t\"q\" \\ end";
    struct mutation m, d;
    size_t n;

    memset(&m, 0, sizeof(m));
    m.op = MUT_PUT;
    m.bucket = SLICE_LIT("bkt");
    m.key = slice_make(binkey, sizeof(binkey) - 1);
    m.stamp = SLICE_LIT("0191f2a3b4c50001.a");
    m.vv = SLICE_LIT("a=3;b=5");
    m.etag = SLICE_LIT("\"9b2cf535f27731c974343645a3985328\"");
    m.size = 1234567890123LL;
    m.tags = SLICE_LIT("k1=v1&k%20two=v%26");
    m.parts = SLICE_LIT("5242880,5242880,17");
    m.time_ms = 1727000000123LL;

    ok_str(mutation_op_name(MUT_PUT), "put", "op name put");
    ok_str(mutation_op_name(MUT_DELETE), "delete", "op name delete");
    ok_str(mutation_op_name(MUT_TAGS), "tags", "op name tags");
    ok(round_trip(&m, &d, &n) == 0 && n <= MUTATION_NFIELDS, "put encodes and decodes");
    ok(same(&m, &d), "put round trip is exact (binary key with space, newline, non-UTF-8)");
    ok(d.key.len == sizeof(binkey) - 1 && memcmp(d.key.ptr, binkey, d.key.len) == 0,
       "key bytes intact");

    m.op = MUT_DELETE;
    m.etag = SLICE_NULL;
    m.tags = SLICE_NULL;
    m.parts = SLICE_NULL;
    m.size = -1;
    ok(round_trip(&m, &d, &n) == 0 && d.op == MUT_DELETE && d.size == -1 && d.etag.len == 0 &&
           d.etag.ptr != NULL && d.tags.len == 0,
       "delete round trip; NULL slices travel as empty strings");

    m.op = MUT_TAGS;
    m.tags = SLICE_LIT("");
    m.vv = SLICE_LIT("");
    m.time_ms = 0;
    ok(round_trip(&m, &d, &n) == 0 && same(&m, &d), "tags round trip with empty set and vector");

    {
        static const char *const minimal[] = {"op",    "put", "bucket", "b", "key", "k",
                                              "stamp", "0000000000000001.a", NULL};

        ok(decode_list(minimal, &d) == 0 && d.size == -1 && d.time_ms == 0 && d.vv.len == 0 &&
               d.parts.len == 0,
           "only the required fields: defaults for the rest");
    }
    {
        static const char *const extra[] = {"future", "x", "op", "delete", "bucket", "b",
                                            "key", "k", "stamp", "0000000000000001.a",
                                            "also-new", "", NULL};

        ok(decode_list(extra, &d) == 0 && d.op == MUT_DELETE, "unknown fields ignored");
    }
    {
        static const char *const no_op[] = {"bucket", "b", "key", "k", "stamp",
                                            "0000000000000001.a", NULL};
        static const char *const no_bucket[] = {"op", "put", "key", "k", "stamp",
                                                "0000000000000001.a", NULL};
        static const char *const no_key[] = {"op", "put", "bucket", "b", "stamp",
                                             "0000000000000001.a", NULL};
        static const char *const no_stamp[] = {"op", "put", "bucket", "b", "key", "k", NULL};
        static const char *const empty_key[] = {"op", "put", "bucket", "b", "key", "",
                                                "stamp", "0000000000000001.a", NULL};

        ok(decode_list(no_op, &d) != 0, "missing op refused");
        ok(decode_list(no_bucket, &d) != 0, "missing bucket refused");
        ok(decode_list(no_key, &d) != 0, "missing key refused");
        ok(decode_list(no_stamp, &d) != 0, "missing stamp refused");
        ok(decode_list(empty_key, &d) != 0, "empty key refused");
    }
    {
#define BASE "bucket", "b", "key", "k", "stamp", "0000000000000001.a"
        static const char *const bad_op[] = {"op", "copy", BASE, NULL};
        static const char *const bad_stamp[] = {"op", "put", "bucket", "b", "key", "k", "stamp",
                                                "0000000000000001", NULL};
        static const char *const bad_vv[] = {"op", "put", BASE, "vv", "b=1;a=1", NULL};
        static const char *const bad_size[] = {"op", "put", BASE, "size", "12x", NULL};
        static const char *const neg_size[] = {"op", "put", BASE, "size", "-2", NULL};
        static const char *const big_size[] = {"op", "put", BASE, "size", "9223372036854775808",
                                               NULL};
        static const char *const bad_time[] = {"op", "put", BASE, "time", "-5", NULL};
        static const char *const bad_parts[] = {"op", "put", BASE, "parts", "5,,6", NULL};
        static const char *const bad_parts2[] = {"op", "put", BASE, "parts", "5,6,", NULL};
        static const char *const bad_parts3[] = {"op", "put", BASE, "parts", "5, 6", NULL};
        static const char *const max_size[] = {"op", "put", BASE, "size", "9223372036854775807",
                                               "parts", "1,2", NULL};
#undef BASE

        ok(decode_list(bad_op, &d) != 0, "unknown op refused");
        ok(decode_list(bad_stamp, &d) != 0, "malformed stamp refused");
        ok(decode_list(bad_vv, &d) != 0, "malformed vector refused");
        ok(decode_list(bad_size, &d) != 0, "junk size refused");
        ok(decode_list(neg_size, &d) != 0, "size below -1 refused");
        ok(decode_list(big_size, &d) != 0, "size over INT64_MAX refused");
        ok(decode_list(bad_time, &d) != 0, "negative time refused");
        ok(decode_list(bad_parts, &d) != 0, "empty part size refused");
        ok(decode_list(bad_parts2, &d) != 0, "trailing comma in parts refused");
        ok(decode_list(bad_parts3, &d) != 0, "space in parts refused");
        ok(decode_list(max_size, &d) == 0 && d.size == INT64_MAX, "INT64_MAX size accepted");
    }
    {
        /* field names are case-sensitive and binary-exact */
        struct slice f[8] = {SLICE_LIT("op"),    SLICE_LIT("put"), SLICE_LIT("bucket"),
                             SLICE_LIT("b"),     SLICE_LIT("key"), slice_make("a\0b", 3),
                             SLICE_LIT("stamp"), SLICE_LIT("0000000000000001.a")};

        ok(mutation_decode(f, 4, &d) == 0 && d.key.len == 3 && d.key.ptr[1] == '\0',
           "a key with a NUL byte decodes intact");
        f[0] = SLICE_LIT("OP");
        ok(mutation_decode(f, 4, &d) != 0, "field names are case-sensitive");
    }
    return done_testing();
}
