/* Unit tests for signing/uri.c: S3 URI encoding and percent-decoding edge cases. */
#include "signing/uri.h"

#include "common/pool.h"
#include "test.h"

static const char *
enc(struct pool *p, const char *s, int keep_slash)
{
    return uri_encode_pool(p, slice_cstr(s), keep_slash);
}

/* Decodes S; returns the result, or "<error>" when refused. */
static const char *
dec(struct pool *p, const char *s, int plus)
{
    struct slice out;

    if (uri_decode_pool(p, slice_cstr(s), plus, &out) != 0) {
        return "<error>";
    }
    return out.ptr;
}

int
main(void)
{
    struct pool p;
    char buf[3 * 256 + 1], all[256];
    struct slice out;
    size_t n, i;
    int bad = 0;

    pool_init(&p);
    ok_str(enc(&p, "", 0), "", "empty stays empty");
    ok_str(enc(&p, "AZaz09-_.~", 0), "AZaz09-_.~", "unreserved characters kept");
    ok_str(enc(&p, "a b+c", 0), "a%20b%2Bc", "space is %%20 (never '+'), plus is %%2B");
    ok_str(enc(&p, "a/b/c", 1), "a/b/c", "slash kept for paths");
    ok_str(enc(&p, "a/b/c", 0), "a%2Fb%2Fc", "slash encoded in query values");
    ok_str(enc(&p, "test$file.text", 1), "test%24file.text", "AWS PUT example key");
    ok_str(enc(&p, "*'()!=&;:@,?#[]%", 0), "%2A%27%28%29%21%3D%26%3B%3A%40%2C%3F%23%5B%5D%25",
           "reserved and sub-delims all escaped, uppercase hex");
    ok_str(enc(&p, "\xc3\xa9\xe6\x97\xa5", 0), "%C3%A9%E6%97%A5", "UTF-8 bytes escaped one by one");
    ok_str(enc(&p, "\x7f\x80\xff", 0), "%7F%80%FF", "DEL and high bytes");
    for (i = 0; i < 256; i++) {
        all[i] = (char)i;
    }
    n = uri_encode(slice_make(all, 256), 0, buf);
    ok(n == strlen(buf) && n == 66 + 3 * 190, "every byte: 66 kept, 190 escaped (%zu)", n);
    ok(uri_decode_pool(&p, slice_make(buf + 3, n - 3), 0, &out) == 0 && out.len == 255 &&
           memcmp(out.ptr, all + 1, 255) == 0,
       "decode(encode(x)) == x for bytes 1..255");

    ok_str(dec(&p, "a%20b%2Bc", 0), "a b+c", "decode %%20 and %%2B");
    ok_str(dec(&p, "a+b", 0), "a+b", "plus kept without PLUS_IS_SPACE");
    ok_str(dec(&p, "a+b", 1), "a b", "plus is space with PLUS_IS_SPACE");
    ok_str(dec(&p, "%2b", 1), "+", "encoded plus stays plus even with PLUS_IS_SPACE");
    ok_str(dec(&p, "%c3%A9", 0), "\xc3\xa9", "hex digits in either case");
    ok_str(dec(&p, "", 0), "", "empty");
    ok_str(dec(&p, "%", 0), "<error>", "lone %%");
    ok_str(dec(&p, "abc%", 0), "<error>", "%% at the end");
    ok_str(dec(&p, "%4", 0), "<error>", "one hex digit");
    ok_str(dec(&p, "x%4", 0), "<error>", "one hex digit at the end");
    ok_str(dec(&p, "%G1", 0), "<error>", "non-hex first digit");
    ok_str(dec(&p, "%1G", 0), "<error>", "non-hex second digit");
    ok_str(dec(&p, "%%41", 0), "<error>", "%%%% is not an escape");
    ok_str(dec(&p, "a%00b", 0), "<error>", "decoded NUL refused");
    ok(uri_decode_pool(&p, slice_make("a\0b", 3), 0, &out) == -1, "raw NUL refused");
    ok_str(dec(&p, "%41%42%43", 0), "ABC", "consecutive escapes");
    ok(uri_decode_pool(&p, slice_make("ab%41zz", 5), 0, &out) == 0 && out.len == 3 &&
           memcmp(out.ptr, "abA", 3) == 0 && out.ptr[3] == '\0',
       "decodes only the slice's bytes, NUL-terminates");
    ok(uri_decode_pool(&p, slice_make("ab%4", 4), 0, &out) == -1,
       "escape cut by the slice end is refused");
    for (i = 1; i < 256; i++) {
        char one[2] = {(char)i, 0};
        const char *e = enc(&p, one, 0);

        bad += strcmp(dec(&p, e, 0), one) != 0;
    }
    ok(bad == 0, "round trip of every single byte");
    pool_deinit(&p);
    return done_testing();
}
