/*
 * fuzz_xml_replicator.c - the S3 XML replicator/apply.c reads and writes: a peer's or the
 * store's answer (captured_tag(): UploadId, Code, Message; error_text() for logs;
 * xml_unescape() in place), and the bodies it builds from a stream entry
 * (apply_tagging_xml() from the entry's "k=v&..." tags, apply_complete_xml() from ETags).
 *
 * First byte: 0 an answer body, 1 a tags field, 2 a text to escape and read back. Checks:
 *   - a captured text is a piece of the body with no closing tag in it, and an error text
 *     stays short enough for a log line;
 *   - xml_unescape() never grows a text and reads it as XML does (tests/fuzz/xml_ref.h);
 *     apply's own escaping reads back to the same bytes;
 *   - a Tagging body we build has one <Tag> per non-empty pair and reads back, through the
 *     reference decoder, to the decoded keys and values.
 */
#include "replicator/apply.c"

#include "fuzz.h"
#include "xml_ref.h"

static void
check_unescape(struct pool *p, const char *s, size_t len)
{
    char *u = pool_strndup(p, s, len), *ref = pool_alloc(p, len + 1), *esc;
    size_t ul, n = 0;
    long rn;

    if (memchr(s, '\0', len) != NULL) {
        return; /* the C-string helpers stop there; bodies are cut the same way */
    }
    xml_unescape(u);
    ul = strlen(u);
    FUZZ_CHECK(ul <= len);
    rn = xml_ref_decode(s, len, ref);
    if (rn >= 0 && memchr(ref, '\0', (size_t)rn) == NULL) {
        FUZZ_CHECK((size_t)rn == ul && memcmp(u, ref, ul) == 0);
    }
    esc = pool_alloc(p, 6 * len + 1);
    if (xml_escape(slice_make(s, len), esc, &n) == 0) {
        esc[n] = '\0';
        xml_unescape(esc);
        FUZZ_CHECK(strlen(esc) == len && memcmp(esc, s, len) == 0);
    }
}

static void
answer(struct pool *p, const uint8_t *body, size_t len)
{
    struct apply a;
    struct leg l;
    const char *tags[] = {"UploadId", "Code", "Message", "ETag", "Key"};
    size_t i;

    memset(&a, 0, sizeof(a));
    memset(&l, 0, sizeof(l));
    pool_init(&a.pool);
    l.capture = evbuffer_new();
    evbuffer_add(l.capture, body, len < CAPTURE_MAX ? len : CAPTURE_MAX);
    for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        const char *t = captured_tag(&a, &l, tags[i]);
        size_t tl = strlen(t);
        char close[32];

        snprintf(close, sizeof(close), "</%s>", tags[i]);
        FUZZ_CHECK(tl == 0 || memmem(body, len, t, tl) != NULL);
        FUZZ_CHECK(strstr(t, close) == NULL);
        check_unescape(p, t, tl);
    }
    {
        const char *code = captured_tag(&a, &l, "Code"), *e = error_text(&a, &l);

        FUZZ_CHECK(strlen(e) <= (code[0] ? strlen(code) + 3 + 120 : 0));
    }
    evbuffer_free(l.capture);
    pool_deinit(&a.pool);
}

static void
tagging(struct pool *p, const uint8_t *data, size_t len)
{
    struct slice tags = slice_make((const char *)data, len);
    char *xml = apply_tagging_xml(p, tags), *etags[2];
    size_t i = 0, pairs = 0, pos, n;
    const char *t;

    if (xml != NULL) {
        FUZZ_CHECK(strncmp(xml, "<Tagging><TagSet>", 17) == 0);
        n = strlen(xml);
        FUZZ_CHECK(n >= 36 && strcmp(xml + n - 19, "</TagSet></Tagging>") == 0);
        /* each pair, decoded, comes back out of its <Key> and <Value> */
        t = xml;
        while (i < len) {
            const char *amp = memchr(data + i, '&', len - i);
            struct slice pair = slice_make((const char *)data + i,
                                           amp ? (size_t)(amp - (const char *)data) - i : len - i);
            struct slice k, v, dk, dv;
            long eq;
            const char *ks, *ke, *vs, *ve;
            char *ref;
            long rn;

            i += pair.len + 1;
            if (pair.len == 0) {
                continue;
            }
            pairs++;
            eq = slice_index(pair, '=');
            k = eq < 0 ? pair : slice_make(pair.ptr, (size_t)eq);
            v = eq < 0 ? SLICE_NULL : slice_make(pair.ptr + eq + 1, pair.len - (size_t)eq - 1);
            FUZZ_CHECK(uri_decode_pool(p, k, 1, &dk) == 0 && uri_decode_pool(p, v, 1, &dv) == 0);
            ks = strstr(t, "<Tag><Key>");
            FUZZ_CHECK(ks != NULL);
            ks += 10;
            ke = strstr(ks, "</Key><Value>");
            FUZZ_CHECK(ke != NULL);
            vs = ke + 13;
            ve = strstr(vs, "</Value></Tag>");
            FUZZ_CHECK(ve != NULL);
            ref = pool_alloc(p, (size_t)(ve - ks) + 1);
            rn = xml_ref_decode(ks, (size_t)(ke - ks), ref);
            FUZZ_CHECK(rn == (long)dk.len && memcmp(ref, dk.ptr, dk.len) == 0);
            rn = xml_ref_decode(vs, (size_t)(ve - vs), ref);
            FUZZ_CHECK(rn == (long)dv.len && (dv.len == 0 || memcmp(ref, dv.ptr, dv.len) == 0));
            t = ve + 14;
        }
        for (pos = 0, n = 0; (t = strstr(xml + pos, "<Tag>")) != NULL; pos = (size_t)(t - xml) + 5) {
            n++;
        }
        FUZZ_CHECK(n == pairs);
    }
    /* the same bytes as two ETags of a Complete body */
    etags[0] = pool_strndup(p, (const char *)data, len / 2);
    etags[1] = pool_strndup(p, (const char *)data + len / 2, len - len / 2);
    xml = apply_complete_xml(p, etags, 2);
    if (xml != NULL) {
        FUZZ_CHECK(strncmp(xml, "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>", 57) == 0);
        n = strlen(xml);
        FUZZ_CHECK(strcmp(xml + n - 33, "</Part></CompleteMultipartUpload>") == 0);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned mode = fuzz_byte(&in) % 3;
    struct pool p;

    pool_init(&p);
    if (mode == 0) {
        answer(&p, in.p, in.len);
    } else if (mode == 1) {
        tagging(&p, in.p, in.len);
    } else {
        check_unescape(&p, (const char *)in.p, in.len);
    }
    pool_deinit(&p);
    return 0;
}
