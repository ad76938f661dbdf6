/* xmlguard.c - streaming size, nesting and element-count bounds on S3 XML request bodies. */
#include "proxy/xmlguard.h"

#include <string.h>

void
xmlguard_init(struct xmlguard *g, int64_t max_bytes, const char *counted, uint32_t max_count)
{
    memset(g, 0, sizeof(*g));
    g->max_bytes = max_bytes;
    g->counted = counted;
    g->max_count = max_count;
    g->state = XG_TEXT;
}

static enum xmlguard_verdict
refuse(struct xmlguard *g, enum xmlguard_verdict v, const char *why)
{
    g->verdict = v;
    g->errstr = why;
    return v;
}

static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The open tag whose '>' was just read. */
static enum xmlguard_verdict
tag_opened(struct xmlguard *g)
{
    if (g->counted != NULL && g->name_len == strlen(g->counted) &&
        memcmp(g->name, g->counted, g->name_len) == 0 && ++g->count > g->max_count) {
        return refuse(g, XMLGUARD_TOO_MANY, "The XML lists more elements than S3 allows.");
    }
    if (g->depth == 0 && ++g->roots > 1) {
        return refuse(g, XMLGUARD_MALFORMED, "The XML has more than one root element.");
    }
    if (g->last == '/') {
        return XMLGUARD_OK; /* <Empty/> */
    }
    if (++g->depth > XMLGUARD_MAX_DEPTH) {
        return refuse(g, XMLGUARD_MALFORMED, "The XML is nested too deeply.");
    }
    return XMLGUARD_OK;
}

enum xmlguard_verdict
xmlguard_feed(struct xmlguard *g, const char *p, size_t n)
{
    size_t i;

    if (g->verdict != XMLGUARD_OK) {
        return g->verdict;
    }
    g->bytes += (int64_t)n;
    if (g->bytes > g->max_bytes) {
        return refuse(g, XMLGUARD_TOO_LARGE, "Your XML request body is larger than the proxy "
                                             "accepts (max_xml_body).");
    }
    for (i = 0; i < n; i++) {
        char c = p[i];

        switch (g->state) {
        case XG_TEXT:
            if (c == '<') {
                g->state = XG_LT;
            }
            break;
        case XG_LT:
            if (c == '/') {
                g->state = XG_CLOSE;
            } else if (c == '?' || c == '!') {
                g->state = XG_SKIP;
            } else if (c == '>' || is_space(c)) {
                return refuse(g, XMLGUARD_MALFORMED, "The XML has an empty tag.");
            } else {
                g->state = XG_OPEN_NAME;
                g->name[0] = c;
                g->name_len = 1;
                g->last = c;
            }
            break;
        case XG_OPEN_NAME:
        case XG_OPEN_REST:
            if (c == '>') {
                g->state = XG_TEXT;
                if (tag_opened(g) != XMLGUARD_OK) {
                    return g->verdict;
                }
                break;
            }
            if (is_space(c)) {
                g->state = XG_OPEN_REST;
                break;
            }
            if (g->state == XG_OPEN_NAME && c != '/') {
                if (g->name_len < sizeof(g->name)) {
                    g->name[g->name_len] = c;
                }
                g->name_len++;
            } else {
                g->state = XG_OPEN_REST;
            }
            g->last = c;
            break;
        case XG_CLOSE:
            if (c == '>') {
                g->state = XG_TEXT;
                if (--g->depth < 0) {
                    return refuse(g, XMLGUARD_MALFORMED, "The XML closes an element it never "
                                                         "opened.");
                }
            }
            break;
        case XG_SKIP:
            if (c == '>') {
                g->state = XG_TEXT;
            }
            break;
        }
    }
    return XMLGUARD_OK;
}

enum xmlguard_verdict
xmlguard_end(struct xmlguard *g)
{
    if (g->verdict != XMLGUARD_OK) {
        return g->verdict;
    }
    if (g->state != XG_TEXT || g->depth != 0 || g->roots != 1) {
        return refuse(g, XMLGUARD_MALFORMED, "The XML you provided was not well-formed.");
    }
    return XMLGUARD_OK;
}
