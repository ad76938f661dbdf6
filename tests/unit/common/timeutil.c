/* Unit tests for common/timeutil.c and common/slice.c. */
#include <string.h>

#include "common/slice.h"
#include "common/timeutil.h"
#include "test.h"

int
main(void)
{
    int64_t ms;
    uint64_t sz;
    time_t t;
    char buf[TIMEUTIL_AMZ_LEN];

    ok(timeutil_parse_duration_ms("250ms", &ms) == 0 && ms == 250, "250ms");
    ok(timeutil_parse_duration_ms("5s", &ms) == 0 && ms == 5000, "5s");
    ok(timeutil_parse_duration_ms("7", &ms) == 0 && ms == 7000, "bare number is seconds");
    ok(timeutil_parse_duration_ms("15m", &ms) == 0 && ms == 900000, "15m");
    ok(timeutil_parse_duration_ms("soon", &ms) != 0, "words refused");
    ok(timeutil_parse_duration_ms("5 s", &ms) != 0, "space refused");
    ok(timeutil_parse_duration_ms("", &ms) != 0, "empty refused");
    ok(timeutil_parse_duration_ms("99999999999999999999s", &ms) != 0, "overflow refused");
    ok(timeutil_parse_size("16k", &sz) == 0 && sz == 16384, "16k");
    ok(timeutil_parse_size("1M", &sz) == 0 && sz == 1048576, "1M");
    ok(timeutil_parse_size("2gb", &sz) == 0 && sz == 2147483648ULL, "2gb");
    ok(timeutil_parse_size("12", &sz) == 0 && sz == 12, "bytes");
    ok(timeutil_parse_size("1t", &sz) != 0, "unknown unit refused");
    ok(timeutil_parse_amz_date(SLICE_LIT("20130524T000000Z"), &t) == 0 && t == 1369353600,
       "amz date parses");
    ok(timeutil_parse_amz_date(SLICE_LIT("20130524T000000"), &t) != 0, "amz date without Z");
    ok(timeutil_parse_amz_date(SLICE_LIT("20131324T000000Z"), &t) != 0, "month 13 refused");
    timeutil_amz_date(1369353600, buf);
    ok_str(buf, "20130524T000000Z", "amz date formats");
    ok(slice_cmp(SLICE_LIT("a"), SLICE_LIT("ab")) < 0, "prefix sorts first");
    ok(slice_eq_nocase(SLICE_LIT("Host"), SLICE_LIT("hOST")), "nocase equal");
    ok(ct_equal("abc", 3, "abc", 3) && !ct_equal("abc", 3, "abd", 3), "ct_equal");
    ok(slice_to_u64(SLICE_LIT("18446744073709551615"), &sz) == 0 && sz == UINT64_MAX, "u64 max");
    ok(slice_to_u64(SLICE_LIT("18446744073709551616"), &sz) != 0, "u64 overflow");
    ok(slice_to_u64(SLICE_LIT("+1"), &sz) != 0, "sign refused");
    {
        char u[4];
        size_t ul = 0;

        ok(slice_xml_charref(SLICE_LIT("&#10;x"), u, &ul) == 5 && ul == 1 && u[0] == '\n',
           "xml charref: decimal LF");
        ok(slice_xml_charref(SLICE_LIT("&#xA;"), u, &ul) == 5 && ul == 1 && u[0] == '\n',
           "xml charref: hex LF");
        ok(slice_xml_charref(SLICE_LIT("&#xe9;"), u, &ul) == 6 && ul == 2 &&
               memcmp(u, "\xc3\xa9", 2) == 0,
           "xml charref: U+00E9 as UTF-8");
        ok(slice_xml_charref(SLICE_LIT("&#x1F600;"), u, &ul) == 9 && ul == 4 &&
               memcmp(u, "\xf0\x9f\x98\x80", 4) == 0,
           "xml charref: U+1F600 as UTF-8");
        ok(slice_xml_charref(SLICE_LIT("&#0;"), u, &ul) == 0, "xml charref: NUL refused");
        ok(slice_xml_charref(SLICE_LIT("&#xD800;"), u, &ul) == 0, "xml charref: surrogate refused");
        ok(slice_xml_charref(SLICE_LIT("&#x110000;"), u, &ul) == 0, "xml charref: > U+10FFFF");
        ok(slice_xml_charref(SLICE_LIT("&#10"), u, &ul) == 0, "xml charref: no ';'");
        ok(slice_xml_charref(SLICE_LIT("&#;"), u, &ul) == 0, "xml charref: no digits");
        ok(slice_xml_charref(SLICE_LIT("&amp;"), u, &ul) == 0, "xml charref: entity is not one");
        ok(slice_xml_charref(SLICE_LIT("&#0000000065;"), u, &ul) == 0,
           "xml charref: more than 8 digits refused");
    }
    return done_testing();
}
