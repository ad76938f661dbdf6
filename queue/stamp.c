/* stamp.c - stamps (HLC + origin site) and version vectors: parse, format, order. Sans-I/O. */
#include "queue/stamp.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define STAMP_HEX_LEN 16 /* hex digits of the HLC in the text form */

static int
site_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

int
stamp_site_valid(struct slice s)
{
    size_t i;

    if (s.len == 0 || s.len > STAMP_SITE_MAX) {
        return 0;
    }
    for (i = 0; i < s.len; i++) {
        if (!site_char(s.ptr[i])) {
            return 0;
        }
    }
    return 1;
}

/* Lowercase hex digit value, or -1 (uppercase is refused: the text form must sort). */
static int
lower_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

int
stamp_parse(struct slice text, struct stamp *out)
{
    uint64_t hlc = 0;
    struct slice site;
    size_t i;

    if (text.len < STAMP_HEX_LEN + 2 || text.ptr[STAMP_HEX_LEN] != '.') {
        return -1;
    }
    for (i = 0; i < STAMP_HEX_LEN; i++) {
        int v = lower_hexval(text.ptr[i]);

        if (v < 0) {
            return -1;
        }
        hlc = hlc << 4 | (uint64_t)v;
    }
    site = slice_make(text.ptr + STAMP_HEX_LEN + 1, text.len - STAMP_HEX_LEN - 1);
    if (!stamp_site_valid(site)) {
        return -1;
    }
    out->hlc = hlc;
    memcpy(out->site, site.ptr, site.len);
    out->site[site.len] = '\0';
    return 0;
}

size_t
stamp_format(const struct stamp *s, char *out)
{
    int n = snprintf(out, STAMP_TEXT_MAX, "%016" PRIx64 ".%s", s->hlc, s->site);

    return n < 0 ? 0 : (size_t)n < STAMP_TEXT_MAX ? (size_t)n : STAMP_TEXT_MAX - 1;
}

int
stamp_cmp(const struct stamp *a, const struct stamp *b)
{
    if (a->hlc != b->hlc) {
        return a->hlc < b->hlc ? -1 : 1;
    }
    return strcmp(a->site, b->site); /* byte order, as the text form sorts */
}

/* Characters vv_format() needs for V, without the NUL. */
static size_t
vv_text_len(const struct vv *v)
{
    size_t i, n = 0;

    for (i = 0; i < v->n; i++) {
        char num[24];

        n += (i ? 1 : 0) + strlen(v->e[i].site) + 1 +
             (size_t)snprintf(num, sizeof(num), "%" PRIu64, v->e[i].counter);
    }
    return n;
}

int
vv_parse(struct slice text, struct vv *out)
{
    size_t pos = 0;

    out->n = 0;
    if (text.len == 0) {
        return 0;
    }
    if (text.len >= VV_TEXT_MAX) {
        return -1;
    }
    for (;;) {
        struct slice ent = slice_make(text.ptr + pos, text.len - pos), site, num;
        long semi = slice_index(ent, ';'), eq;
        uint64_t counter;

        if (semi >= 0) {
            ent.len = (size_t)semi;
        }
        eq = slice_index(ent, '=');
        if (eq <= 0) {
            return -1;
        }
        site = slice_make(ent.ptr, (size_t)eq);
        num = slice_make(ent.ptr + eq + 1, ent.len - (size_t)eq - 1);
        if (!stamp_site_valid(site) || slice_to_u64(num, &counter) != 0 || out->n == VV_MAX_SITES) {
            return -1;
        }
        if (num.len > 1 && num.ptr[0] == '0') {
            return -1; /* "a=07": one vector, one text (vv_format never writes it) */
        }
        if (out->n > 0 && slice_cmp(slice_cstr(out->e[out->n - 1].site), site) >= 0) {
            return -1; /* unsorted or duplicate */
        }
        memcpy(out->e[out->n].site, site.ptr, site.len);
        out->e[out->n].site[site.len] = '\0';
        out->e[out->n].counter = counter;
        out->n++;
        if (semi < 0) {
            return 0;
        }
        pos += (size_t)semi + 1;
        if (pos == text.len) {
            return -1; /* trailing ';' */
        }
    }
}

size_t
vv_format(const struct vv *v, char *out)
{
    size_t i, n = 0;

    out[0] = '\0';
    if (vv_text_len(v) >= VV_TEXT_MAX) {
        return 0; /* cannot happen for vectors made by vv_parse/vv_bump/vv_merge */
    }
    for (i = 0; i < v->n; i++) {
        n += (size_t)snprintf(out + n, VV_TEXT_MAX - n, "%s%s=%" PRIu64, i ? ";" : "",
                              v->e[i].site, v->e[i].counter);
    }
    return n;
}

/* Counter of SITE in V (0 when absent). */
static uint64_t
vv_get(const struct vv *v, const char *site)
{
    size_t i;

    for (i = 0; i < v->n; i++) {
        if (strcmp(v->e[i].site, site) == 0) {
            return v->e[i].counter;
        }
    }
    return 0;
}

enum vv_order
vv_compare(const struct vv *a, const struct vv *b)
{
    int less = 0, more = 0;
    size_t i;

    for (i = 0; i < a->n; i++) {
        uint64_t x = a->e[i].counter, y = vv_get(b, a->e[i].site);

        less |= x < y;
        more |= x > y;
    }
    for (i = 0; i < b->n; i++) {
        uint64_t x = vv_get(a, b->e[i].site), y = b->e[i].counter;

        less |= x < y;
        more |= x > y;
    }
    if (less && more) {
        return VV_CONCURRENT;
    }
    return less ? VV_BEFORE : more ? VV_AFTER : VV_EQUAL;
}

int
vv_bump(struct vv *v, const char *site)
{
    struct vv t = *v;
    size_t i, len = site ? strlen(site) : 0;

    if (!stamp_site_valid(slice_make(site, len))) {
        return -1;
    }
    for (i = 0; i < t.n && strcmp(t.e[i].site, site) < 0; i++) {
    }
    if (i < t.n && strcmp(t.e[i].site, site) == 0) {
        if (t.e[i].counter == UINT64_MAX) {
            return -1;
        }
        t.e[i].counter++;
    } else {
        if (t.n == VV_MAX_SITES) {
            return -1;
        }
        memmove(&t.e[i + 1], &t.e[i], (t.n - i) * sizeof(t.e[0]));
        memcpy(t.e[i].site, site, len + 1);
        t.e[i].counter = 1;
        t.n++;
    }
    if (vv_text_len(&t) >= VV_TEXT_MAX) {
        return -1;
    }
    *v = t;
    return 0;
}

int
vv_merge(struct vv *a, const struct vv *b)
{
    struct vv t;
    size_t i = 0, j = 0;

    t.n = 0;
    while (i < a->n || j < b->n) {
        int c = i == a->n ? 1 : j == b->n ? -1 : strcmp(a->e[i].site, b->e[j].site);

        if (t.n == VV_MAX_SITES) {
            return -1;
        }
        if (c < 0) {
            t.e[t.n++] = a->e[i++];
        } else if (c > 0) {
            t.e[t.n++] = b->e[j++];
        } else {
            t.e[t.n] = a->e[i];
            if (b->e[j].counter > t.e[t.n].counter) {
                t.e[t.n].counter = b->e[j].counter;
            }
            t.n++;
            i++;
            j++;
        }
    }
    if (vv_text_len(&t) >= VV_TEXT_MAX) {
        return -1;
    }
    *a = t;
    return 0;
}
