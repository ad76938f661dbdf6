/*
 * stamp.h - stamps (hybrid logical clock + origin site) and version vectors, as text.
 * Sans-I/O. Formats are in notes/replication.md; text stamps sort like the stamps.
 */
#ifndef S3TEE_QUEUE_STAMP_H
#define S3TEE_QUEUE_STAMP_H

#include <stddef.h>
#include <stdint.h>

#include "common/slice.h"

#define STAMP_SITE_MAX 32            /* longest site id */
#define STAMP_TEXT_MAX 52            /* 16 hex + '.' + site + NUL, with room */
#define VV_MAX_SITES 16              /* sites in one deployment */
#define VV_TEXT_MAX 640              /* "site=counter;" * VV_MAX_SITES + NUL */

struct stamp {
    uint64_t hlc;                    /* ms << 16 | counter */
    char site[STAMP_SITE_MAX + 1];   /* origin site id, NUL-terminated */
};

/* 1 if S is a valid site id ([a-z0-9-], 1..STAMP_SITE_MAX). */
int stamp_site_valid(struct slice s);
/* "0191f2a3b4c50001.a" -> stamp; 0 or -1. */
int stamp_parse(struct slice text, struct stamp *out);
/* Writes the text form into OUT (STAMP_TEXT_MAX); returns its length. */
size_t stamp_format(const struct stamp *s, char *out);
/* <0, 0, >0 by (hlc, site). */
int stamp_cmp(const struct stamp *a, const struct stamp *b);
/* Milliseconds part of the HLC. */
static inline int64_t
stamp_ms(const struct stamp *s)
{
    return (int64_t)(s->hlc >> 16);
}

struct vv {
    size_t n;                                  /* entries in use, sorted by site */
    struct {
        char site[STAMP_SITE_MAX + 1];         /* site id */
        uint64_t counter;                      /* writes this site made to the key */
    } e[VV_MAX_SITES];
};

enum vv_order { VV_EQUAL = 0, VV_BEFORE, VV_AFTER, VV_CONCURRENT };

/* "a=3;b=5" (empty = no writes) -> vv; 0 or -1 (bad syntax, a counter with a leading zero,
 * unsorted, duplicate, too many). */
int vv_parse(struct slice text, struct vv *out);
size_t vv_format(const struct vv *v, char *out);            /* OUT holds VV_TEXT_MAX */
/* How A relates to B: BEFORE = A happened before B (B dominates). */
enum vv_order vv_compare(const struct vv *a, const struct vv *b);
/* Increments SITE's counter (adding the site if absent); -1 if the vector is full. */
int vv_bump(struct vv *v, const char *site);
/* Pointwise maximum into A. */
int vv_merge(struct vv *a, const struct vv *b);

#endif
