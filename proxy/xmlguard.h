/*
 * xmlguard.h - bounds on the S3 XML request bodies the proxy streams to the store
 * (DeleteObjects, CompleteMultipartUpload), checked as the bytes pass, without buffering.
 *
 * The proxy does not parse these bodies (the store does), but a store's parser is not a
 * limit we control: RGW answers a 2 MiB DeleteObjects with 416 InvalidRange and 1,001 keys
 * with a bare 400. xmlguard is a tag scanner, not a validating parser: it follows element
 * nesting, counts the elements of one name, and counts bytes. Comments, CDATA sections
 * and processing instructions are skipped up to the next '>', which S3 bodies never need.
 * Sans-I/O: bytes in, a verdict out.
 */
#ifndef S3TEE_PROXY_XMLGUARD_H
#define S3TEE_PROXY_XMLGUARD_H

#include <stddef.h>
#include <stdint.h>

/* Deepest element nesting accepted; S3 request bodies nest three deep. */
#define XMLGUARD_MAX_DEPTH 16

enum xmlguard_verdict {
    XMLGUARD_OK = 0,         /* nothing wrong so far */
    XMLGUARD_TOO_LARGE,      /* more than max_bytes: EntityTooLarge */
    XMLGUARD_TOO_MANY,       /* more than max_count elements named `counted`: MalformedXML */
    XMLGUARD_MALFORMED,      /* nesting too deep, a stray close tag, unclosed at the end */
};

struct xmlguard {
    int64_t max_bytes;             /* body size limit */
    int64_t bytes;                 /* bytes fed so far */
    const char *counted;           /* element name to count, e.g. "Object" (static string) */
    uint32_t max_count;            /* most `counted` elements allowed */
    uint32_t count;                /* `counted` elements opened so far */
    int depth;                     /* open elements */
    int roots;                     /* top-level elements seen (one allowed) */
    enum {
        XG_TEXT,                   /* character data */
        XG_LT,                     /* after '<' */
        XG_OPEN_NAME,              /* in an open tag's name */
        XG_OPEN_REST,              /* in an open tag after its name (attributes) */
        XG_CLOSE,                  /* in a close tag */
        XG_SKIP,                   /* <? ... > or <! ... > */
    } state;
    char name[24];                 /* start of the current open tag's name */
    size_t name_len;               /* its length so far (may exceed sizeof(name)) */
    char last;                     /* last non-space byte inside the current open tag */
    enum xmlguard_verdict verdict; /* sticky: the first problem found */
    const char *errstr;            /* what the problem was, for the client (static) */
};

/*
 * xmlguard_init - a guard for one body: at most MAX_BYTES bytes, at most MAX_COUNT elements
 * named COUNTED (a static string; NULL counts nothing). G is caller-owned; no deinit.
 */
void xmlguard_init(struct xmlguard *g, int64_t max_bytes, const char *counted,
                   uint32_t max_count);

/* xmlguard_feed - scans N more bytes; returns the verdict so far (sticky once not OK). */
enum xmlguard_verdict xmlguard_feed(struct xmlguard *g, const char *p, size_t n);

/* xmlguard_end - the body is complete: MALFORMED unless exactly one root element closed. */
enum xmlguard_verdict xmlguard_end(struct xmlguard *g);

#endif
