/* Unit tests for queue/stamp.c: stamps and version vectors as text, order, bump, merge. */
#include "queue/stamp.h"

#include <stdlib.h>

#include "test.h"

/* Parses TEXT and formats it again; "<error>" when refused. */
static const char *
stamp_round(const char *text, char *buf)
{
    struct stamp s;

    if (stamp_parse(slice_cstr(text), &s) != 0) {
        return "<error>";
    }
    stamp_format(&s, buf);
    return buf;
}

static const char *
vv_round(const char *text, char *buf)
{
    struct vv v;

    if (vv_parse(slice_cstr(text), &v) != 0) {
        return "<error>";
    }
    vv_format(&v, buf);
    return buf;
}

static int
cmp_text(const char *a, const char *b)
{
    struct stamp x, y;

    if (stamp_parse(slice_cstr(a), &x) != 0 || stamp_parse(slice_cstr(b), &y) != 0) {
        return 99;
    }
    return stamp_cmp(&x, &y);
}

static enum vv_order
order(const char *a, const char *b)
{
    struct vv x, y;

    if (vv_parse(slice_cstr(a), &x) != 0 || vv_parse(slice_cstr(b), &y) != 0) {
        return (enum vv_order)99;
    }
    return vv_compare(&x, &y);
}

static int
sign(int x)
{
    return x < 0 ? -1 : x > 0;
}

/* Sorting text stamps with strcmp gives the same order as stamp_cmp. */
static void
test_text_order(void)
{
    static const char *const s[] = {
        "0000000000000000.a",  "0000000000000001.a",   "0000000000000001.a-b",
        "0000000000000001.ab", "00000000000000ff.z",   "0191f2a3b4c50001.a",
        "0191f2a3b4c50001.b",  "0191f2a3b4c5ffff.a",   "0191f2a3b4c60000.a",
        "ffffffffffffffff.0",  "ffffffffffffffff.zzz",
    };
    size_t i, j, n = sizeof(s) / sizeof(s[0]), bad = 0;

    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
            if (sign(cmp_text(s[i], s[j])) != sign(strcmp(s[i], s[j])) ||
                sign(cmp_text(s[i], s[j])) != (i < j ? -1 : i > j)) {
                bad++;
            }
        }
    }
    ok(bad == 0, "text stamps sort like stamp_cmp (%zu pairs)", n * n);
}

int
main(void)
{
    char buf[VV_TEXT_MAX];
    struct stamp s;
    struct vv v, w;
    char big[VV_TEXT_MAX + 8];
    size_t i;

    /* sites */
    ok(stamp_site_valid(SLICE_LIT("a")), "site 'a'");
    ok(stamp_site_valid(SLICE_LIT("eu-west-1")), "site with dashes and digits");
    ok(stamp_site_valid(SLICE_LIT("abcdefghijklmnopqrstuvwxyz012345")), "32-char site");
    ok(!stamp_site_valid(SLICE_LIT("abcdefghijklmnopqrstuvwxyz0123456")), "33-char site refused");
    ok(!stamp_site_valid(SLICE_LIT("")), "empty site refused");
    ok(!stamp_site_valid(SLICE_LIT("EU")), "uppercase site refused");
    ok(!stamp_site_valid(SLICE_LIT("a.b")), "dot in site refused");
    ok(!stamp_site_valid(SLICE_LIT("a;b")), "semicolon in site refused");

    /* stamps */
    ok(stamp_parse(SLICE_LIT("0191f2a3b4c50001.a"), &s) == 0 && s.hlc == 0x0191f2a3b4c50001ULL &&
           strcmp(s.site, "a") == 0,
       "stamp parses");
    ok(stamp_ms(&s) == 0x0191f2a3b4c5LL, "stamp_ms is the top 48 bits");
    ok_str(stamp_round("0191f2a3b4c50001.eu-west", buf), "0191f2a3b4c50001.eu-west",
           "stamp round trip");
    ok_str(stamp_round("ffffffffffffffff.zzz", buf), "ffffffffffffffff.zzz", "max hlc round trip");
    s.hlc = 42;
    strcpy(s.site, "b");
    ok(stamp_format(&s, buf) == 18 && strcmp(buf, "000000000000002a.b") == 0,
       "stamp_format pads to 16 hex and returns the length");
    ok_str(stamp_round("0191F2A3B4C50001.a", buf), "<error>", "uppercase hex refused");
    ok_str(stamp_round("191f2a3b4c50001.a", buf), "<error>", "15 hex digits refused");
    ok_str(stamp_round("00191f2a3b4c50001.a", buf), "<error>", "17 hex digits refused");
    ok_str(stamp_round("0191f2a3b4c50001", buf), "<error>", "missing site refused");
    ok_str(stamp_round("0191f2a3b4c50001.", buf), "<error>", "empty site refused");
    ok_str(stamp_round("0191f2a3b4c50001-a", buf), "<error>", "missing dot refused");
    ok_str(stamp_round("0191f2a3b4c5000g.a", buf), "<error>", "non-hex refused");
    ok_str(stamp_round("0191f2a3b4c50001.A", buf), "<error>", "bad site refused");
    ok_str(stamp_round("", buf), "<error>", "empty stamp refused");
    ok(stamp_parse(slice_make("0191f2a3b4c50001.a\0b", 20), &s) != 0, "NUL inside refused");
    ok(cmp_text("0000000000000002.a", "0000000000000001.z") > 0, "hlc decides first");
    ok(cmp_text("0000000000000001.b", "0000000000000001.a") > 0, "then the site");
    ok(cmp_text("0000000000000001.a", "0000000000000001.a") == 0, "equal stamps");
    test_text_order();

    /* vectors */
    ok_str(vv_round("", buf), "", "empty vector");
    ok_str(vv_round("a=3;b=5", buf), "a=3;b=5", "vector round trip");
    ok_str(vv_round("a=0", buf), "a=0", "zero counter kept");
    ok_str(vv_round("eu-west=18446744073709551615", buf), "eu-west=18446744073709551615",
           "max counter");
    ok_str(vv_round("b=1;a=2", buf), "<error>", "unsorted refused");
    ok_str(vv_round("a=1;a=2", buf), "<error>", "duplicate refused");
    ok_str(vv_round("a=1;", buf), "<error>", "trailing ';' refused");
    ok_str(vv_round(";a=1", buf), "<error>", "leading ';' refused");
    ok_str(vv_round("a=01", buf), "<error>", "counter with a leading zero refused");
    ok_str(vv_round("a=0;b=10", buf), "a=0;b=10", "counters 0 and 10 accepted");
    ok_str(vv_round("a=1;;b=1", buf), "<error>", "empty entry refused");
    ok_str(vv_round("a=", buf), "<error>", "missing counter refused");
    ok_str(vv_round("=1", buf), "<error>", "missing site refused");
    ok_str(vv_round("a=-1", buf), "<error>", "negative counter refused");
    ok_str(vv_round("a=1x", buf), "<error>", "junk counter refused");
    ok_str(vv_round("a=18446744073709551616", buf), "<error>", "counter overflow refused");
    ok_str(vv_round("A=1", buf), "<error>", "bad site refused");
    ok_str(vv_round("a", buf), "<error>", "no '=' refused");
    {
        char t[VV_TEXT_MAX], *p = t;

        for (i = 0; i < VV_MAX_SITES + 1; i++) {
            p += sprintf(p, "%s%c=1", i ? ";" : "", (char)('a' + i));
        }
        ok_str(vv_round(t, buf), "<error>", "17 sites refused");
        t[strlen(t) - 4] = '\0';
        ok(vv_parse(slice_cstr(t), &v) == 0 && v.n == VV_MAX_SITES, "16 sites accepted");
    }
    memset(big, 'a', sizeof(big));
    big[0] = 'a';
    big[1] = '=';
    big[sizeof(big) - 1] = '\0';
    for (i = 2; i < sizeof(big) - 1; i++) {
        big[i] = '1';
    }
    ok(vv_parse(slice_cstr(big), &v) != 0, "vector text over VV_TEXT_MAX refused");

    /* compare: all four outcomes */
    ok(order("a=1;b=2", "a=1;b=2") == VV_EQUAL, "equal");
    ok(order("", "") == VV_EQUAL, "empty equals empty");
    ok(order("a=0", "") == VV_EQUAL, "zero counter equals absent");
    ok(order("a=1", "a=2") == VV_BEFORE, "before (same site)");
    ok(order("a=1", "a=1;b=1") == VV_BEFORE, "before (other site added)");
    ok(order("", "a=1") == VV_BEFORE, "empty is before everything");
    ok(order("a=2;b=1", "a=1;b=1") == VV_AFTER, "after");
    ok(order("b=1", "") == VV_AFTER, "after empty");
    ok(order("a=2;b=1", "a=1;b=2") == VV_CONCURRENT, "concurrent");
    ok(order("a=1", "b=1") == VV_CONCURRENT, "concurrent disjoint");

    /* bump */
    vv_parse(SLICE_LIT("b=5"), &v);
    ok(vv_bump(&v, "b") == 0 && vv_format(&v, buf) && strcmp(buf, "b=6") == 0, "bump existing");
    ok(vv_bump(&v, "a") == 0 && vv_format(&v, buf) && strcmp(buf, "a=1;b=6") == 0,
       "bump adds a site in order (front)");
    ok(vv_bump(&v, "c") == 0 && vv_format(&v, buf) && strcmp(buf, "a=1;b=6;c=1") == 0,
       "bump adds a site in order (end)");
    ok(vv_bump(&v, "b-x") == 0 && vv_format(&v, buf) && strcmp(buf, "a=1;b=6;b-x=1;c=1") == 0,
       "bump adds a site in order (middle)");
    ok(vv_bump(&v, "B") != 0 && vv_bump(&v, "") != 0, "bump refuses bad sites");
    vv_parse(SLICE_LIT("a=18446744073709551615"), &v);
    ok(vv_bump(&v, "a") != 0, "bump refuses counter overflow");
    vv_parse(SLICE_LIT(""), &v);
    for (i = 0; i < VV_MAX_SITES; i++) {
        char site[4] = {'s', (char)('a' + i), 0, 0};

        vv_bump(&v, site);
    }
    ok(v.n == VV_MAX_SITES && vv_bump(&v, "zz") != 0, "bump refuses a 17th site");
    ok(vv_bump(&v, "sa") == 0, "a full vector still bumps its sites");
    {
        /* 16 sites of 32 characters fit (559 chars); long counters could overflow the text */
        size_t len, k;
        uint64_t c = 1;

        vv_parse(SLICE_LIT(""), &v);
        for (i = 0; i < VV_MAX_SITES; i++) {
            char site[STAMP_SITE_MAX + 1];

            memset(site, 'a' + (int)i, STAMP_SITE_MAX);
            site[STAMP_SITE_MAX] = '\0';
            vv_bump(&v, site);
        }
        len = vv_format(&v, buf);
        ok(v.n == VV_MAX_SITES && len == 16 * 35 - 1, "16 long sites fit the text form");
        for (i = 0; i < 4; i++) {
            v.e[i].counter = 999999999999999999ULL; /* 18 digits */
        }
        len = vv_format(&v, buf);
        for (k = 1 + (VV_TEXT_MAX - 1 - len); k > 0; k--) {
            c *= 10;
        }
        v.e[4].counter = c - 1; /* all nines: the text is now exactly VV_TEXT_MAX - 1 long */
        ok(vv_format(&v, buf) == VV_TEXT_MAX - 1, "text of VV_TEXT_MAX - 1 formats");
        ok(vv_bump(&v, v.e[4].site) != 0 && v.e[4].counter == c - 1,
           "bump refuses to grow the text to VV_TEXT_MAX, vector unchanged");
        ok(vv_bump(&v, v.e[5].site) == 0, "a bump that keeps the length still works");
    }

    /* merge */
    vv_parse(SLICE_LIT("a=3;c=1"), &v);
    vv_parse(SLICE_LIT("a=1;b=4;c=2"), &w);
    ok(vv_merge(&v, &w) == 0 && vv_format(&v, buf) && strcmp(buf, "a=3;b=4;c=2") == 0,
       "merge is the pointwise max");
    ok(vv_compare(&v, &w) == VV_AFTER, "the merge dominates its input");
    vv_parse(SLICE_LIT(""), &v);
    ok(vv_merge(&v, &w) == 0 && vv_compare(&v, &w) == VV_EQUAL, "merge into empty copies");
    vv_parse(SLICE_LIT(""), &v);
    vv_parse(SLICE_LIT(""), &w);
    for (i = 0; i < 10; i++) {
        char a[3] = {'a', (char)('a' + i), 0}, b[3] = {'b', (char)('a' + i), 0};

        vv_bump(&v, a);
        vv_bump(&w, b);
    }
    ok(vv_merge(&v, &w) != 0 && v.n == 10, "merge past VV_MAX_SITES refused, A unchanged");
    return done_testing();
}
