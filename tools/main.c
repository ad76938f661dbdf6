/*
 * main.c - s3tee, the operator's tool: reads a site's Redis and prints JSON lines.
 *
 *   s3tee conflicts [--redis HOST:PORT] [--bucket B] [--since T] [--until T] [--limit N]
 *   s3tee dead      [--redis HOST:PORT] [--bucket B] [--since T] [--until T] [--limit N]
 *   s3tee resync    --bucket B --peer P [...]      (tools/resync.c: anti-entropy with a peer)
 *
 * T is seconds since the epoch, or an ISO-8601 UTC time (2026-11-22T10:00:00Z). Both
 * streams are ordered by entry id, whose first part is the time the entry was added, so a
 * time window is an XRANGE over ids. One JSON object per line, fields as stored.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "tools/resync.h"

#define PAGE 500

struct opts {
    const char *host;   /* redis host */
    int port;           /* redis port */
    const char *bucket; /* only entries of this bucket, or NULL */
    long long since_ms; /* first id time, 0 = start */
    long long until_ms; /* last id time, 0 = end */
    long long limit;    /* stop after this many lines, 0 = no limit */
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: s3tee conflicts|dead [--redis HOST:PORT] [--bucket B] [--since T] "
               "[--until T] [--limit N]\n"
               "       s3tee resync --bucket B --peer P [...] (s3tee resync --help)\n"
               "  conflicts  writes that lost to a concurrent write (the conflict log)\n"
               "  dead       replication entries that kept failing (the dead-letter stream)\n"
               "  T          seconds since the epoch, or YYYY-MM-DDTHH:MM:SSZ\n"
               "  --redis    the site's Redis (default 127.0.0.1:6379)\n"
               "Prints one JSON object per line.\n");
}

static int
parse_time(const char *s, long long *ms)
{
    struct tm tm;
    char *end;
    long long v = strtoll(s, &end, 10);

    if (*s != '\0' && *end == '\0') {
        *ms = v * 1000;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL || (*end != 'Z' && *end != '\0') || (*end == 'Z' && end[1] != '\0')) {
        return -1;
    }
    *ms = (long long)timegm(&tm) * 1000;
    return 0;
}

/* Prints the entries of one XRANGE page; returns how many were read, -1 on error. */
static long
print_page(redisReply *page, const struct opts *o, long long *printed, char *last_id,
           size_t last_len)
{
    size_t i, j;

    if (page->type != REDIS_REPLY_ARRAY) {
        return -1;
    }
    for (i = 0; i < page->elements; i++) {
        redisReply *e = page->element[i], *fields;
        json_t *obj;
        char *line;
        int keep = 1;

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) {
            continue;
        }
        snprintf(last_id, last_len, "%s", e->element[0]->str);
        fields = e->element[1];
        obj = json_object();
        json_object_set_new(obj, "id", json_string(e->element[0]->str));
        for (j = 0; j + 1 < fields->elements; j += 2) {
            const char *name = fields->element[j]->str;
            redisReply *v = fields->element[j + 1];
            json_t *jv = json_stringn(v->str, (size_t)v->len);

            if (jv == NULL) { /* keys are bytes; keep invalid UTF-8 visible as hex */
                char *hex = malloc((size_t)v->len * 2 + 1);
                size_t k;

                for (k = 0; hex != NULL && k < (size_t)v->len; k++) {
                    snprintf(hex + 2 * k, 3, "%02x", (unsigned char)v->str[k]);
                }
                jv = json_string(hex ? hex : "");
                free(hex);
                name = strcmp(name, "key") == 0 ? "key_hex" : name;
            }
            if (o->bucket != NULL && strcmp(name, "bucket") == 0 &&
                ((size_t)v->len != strlen(o->bucket) || memcmp(v->str, o->bucket, (size_t)v->len))) {
                keep = 0;
            }
            json_object_set_new(obj, name, jv);
        }
        if (keep && (o->limit == 0 || *printed < o->limit)) {
            line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (line != NULL) {
                puts(line);
                free(line);
            }
            (*printed)++;
        }
        json_decref(obj);
    }
    return (long)page->elements;
}

static int
list_stream(redisContext *rc, const char *stream, const struct opts *o)
{
    char start[64], end[64], last[64] = "";
    long long printed = 0;

    snprintf(start, sizeof(start), "%lld-0", o->since_ms);
    if (o->until_ms > 0) {
        snprintf(end, sizeof(end), "%lld-18446744073709551615", o->until_ms);
    } else {
        snprintf(end, sizeof(end), "+");
    }
    for (;;) {
        redisReply *page = redisCommand(rc, "XRANGE %s %s %s COUNT %d", stream, start, end, PAGE);
        long n;

        if (page == NULL) {
            fprintf(stderr, "s3tee: redis: %s\n", rc->errstr);
            return 1;
        }
        if (page->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "s3tee: redis: %s\n", page->str);
            freeReplyObject(page);
            return 1;
        }
        n = print_page(page, o, &printed, last, sizeof(last));
        freeReplyObject(page);
        if (n < PAGE || (o->limit > 0 && printed >= o->limit)) {
            return 0;
        }
        /* the next page starts just after the last id: "(" makes the range exclusive */
        snprintf(start, sizeof(start), "(%s", last);
    }
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {{"redis", required_argument, NULL, 'r'},
                                             {"bucket", required_argument, NULL, 'b'},
                                             {"since", required_argument, NULL, 's'},
                                             {"until", required_argument, NULL, 'u'},
                                             {"limit", required_argument, NULL, 'l'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'v'},
                                             {NULL, 0, NULL, 0}};
    struct opts o = {"127.0.0.1", 6379, NULL, 0, 0, 0};
    const char *cmd, *stream;
    static char host[256];
    redisContext *rc;
    int c, rcode;

    /* resync writes to https peers: a peer closing early must be an error, not SIGPIPE */
    signal(SIGPIPE, SIG_IGN);

    if (argc > 1 && strcmp(argv[1], "resync") == 0) {
        return resync_main(argc - 1, argv + 1); /* options of its own */
    }

    while ((c = getopt_long(argc, argv, "r:b:s:u:l:hv", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': {
            const char *colon = strrchr(optarg, ':');

            if (colon == NULL || colon == optarg || (size_t)(colon - optarg) >= sizeof(host) ||
                atoi(colon + 1) <= 0) {
                fprintf(stderr, "s3tee: --redis: expected HOST:PORT, got '%s'\n", optarg);
                return 2;
            }
            memcpy(host, optarg, (size_t)(colon - optarg));
            host[colon - optarg] = '\0';
            o.host = host;
            o.port = atoi(colon + 1);
            break;
        }
        case 'b':
            o.bucket = optarg;
            break;
        case 's':
        case 'u':
            if (parse_time(optarg, c == 's' ? &o.since_ms : &o.until_ms) != 0) {
                fprintf(stderr, "s3tee: --%s: expected seconds since the epoch or "
                                "YYYY-MM-DDTHH:MM:SSZ, got '%s'\n",
                        c == 's' ? "since" : "until", optarg);
                return 2;
            }
            break;
        case 'l':
            o.limit = atoll(optarg);
            break;
        case 'v':
            printf("s3tee %s\n", S3TEE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "conflicts") == 0) {
        stream = "s3tee:conflicts";
    } else if (strcmp(cmd, "dead") == 0) {
        stream = "s3tee:dead";
    } else {
        fprintf(stderr, "s3tee: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    rc = redisConnect(o.host, o.port);
    if (rc == NULL || rc->err) {
        fprintf(stderr, "s3tee: cannot reach Redis at %s:%d: %s\n", o.host, o.port,
                rc ? rc->errstr : "out of memory");
        redisFree(rc);
        return 1;
    }
    rcode = list_stream(rc, stream, &o);
    redisFree(rc);
    return rcode;
}
