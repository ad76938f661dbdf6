/*
 * fuzz_stamp.c - queue/stamp.c: stamps and version vectors, as peers send them in
 * x-s3tee-stamp / x-s3tee-vv and as the stream carries them.
 *
 * Input: "A\nB" (B may be absent). Checks:
 *   - a stamp that parses formats back to exactly the same bytes, and two parsed stamps
 *     compare as their texts do (the text form must sort like the stamp: stores and Redis
 *     compare them as strings);
 *   - a vector that parses formats back to the same bytes; vv_compare is antisymmetric;
 *     the merge of two vectors dominates both and is what comparing against either says;
 *     a bump makes a vector strictly later.
 */
#include "fuzz.h"

#include "queue/stamp.h"

static int
sign(int v)
{
    return (v > 0) - (v < 0);
}

static enum vv_order
flip(enum vv_order o)
{
    return o == VV_BEFORE ? VV_AFTER : o == VV_AFTER ? VV_BEFORE : o;
}

static void
check_vv(struct slice t, struct vv *v)
{
    char out[VV_TEXT_MAX];
    size_t n = vv_format(v, out);

    FUZZ_CHECK(n == t.len && memcmp(out, t.ptr, n) == 0);
    FUZZ_CHECK(vv_compare(v, v) == VV_EQUAL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *nl = memchr(s, '\n', size);
    struct slice a = nl ? slice_make(s, (size_t)(nl - s)) : slice_make(s, size);
    struct slice b = nl ? slice_make(nl + 1, size - (size_t)(nl + 1 - s)) : SLICE_NULL;
    struct stamp sa, sb;
    struct vv va, vb, m, bumped, again;
    char out[STAMP_TEXT_MAX], mtext[VV_TEXT_MAX];
    int pa, pb;
    size_t n;

    pa = stamp_parse(a, &sa) == 0;
    pb = b.ptr != NULL && stamp_parse(b, &sb) == 0;
    if (pa) {
        n = stamp_format(&sa, out);
        FUZZ_CHECK(n == a.len && memcmp(out, a.ptr, n) == 0);
        FUZZ_CHECK(stamp_site_valid(slice_cstr(sa.site)));
        FUZZ_CHECK(stamp_ms(&sa) == (int64_t)(sa.hlc >> 16));
    }
    if (pa && pb) {
        int t = memcmp(a.ptr, b.ptr, a.len < b.len ? a.len : b.len);

        if (t == 0) {
            t = (a.len > b.len) - (a.len < b.len);
        }
        FUZZ_CHECK(sign(stamp_cmp(&sa, &sb)) == sign(t));
        FUZZ_CHECK(sign(stamp_cmp(&sb, &sa)) == -sign(t));
    }

    pa = vv_parse(a, &va) == 0;
    pb = b.ptr != NULL && vv_parse(b, &vb) == 0;
    if (pa) {
        check_vv(a, &va);
        bumped = va;
        if (vv_bump(&bumped, "fuzz-site") == 0) {
            FUZZ_CHECK(vv_compare(&va, &bumped) == VV_BEFORE);
            FUZZ_CHECK(vv_compare(&bumped, &va) == VV_AFTER);
        }
    }
    if (pb) {
        check_vv(b, &vb);
    }
    if (pa && pb) {
        enum vv_order ab = vv_compare(&va, &vb);

        FUZZ_CHECK(vv_compare(&vb, &va) == flip(ab));
        m = va;
        if (vv_merge(&m, &vb) == 0) {
            enum vv_order am = vv_compare(&va, &m), bm = vv_compare(&vb, &m);

            FUZZ_CHECK(am == VV_BEFORE || am == VV_EQUAL);
            FUZZ_CHECK(bm == VV_BEFORE || bm == VV_EQUAL);
            FUZZ_CHECK((am == VV_EQUAL) == (ab == VV_AFTER || ab == VV_EQUAL));
            FUZZ_CHECK((bm == VV_EQUAL) == (ab == VV_BEFORE || ab == VV_EQUAL));
            /* the merged vector's text is a vector too, the same one */
            n = vv_format(&m, mtext);
            FUZZ_CHECK(vv_parse(slice_make(mtext, n), &again) == 0);
            FUZZ_CHECK(vv_compare(&again, &m) == VV_EQUAL);
        }
    }
    return 0;
}
