/* conf.c - generic config loader: line splitting, typed setters, file:line error messages. */
#include "conf.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "timeutil.h"
#include "xalloc.h"

#define CONF_MAX_FILE (16 * 1024 * 1024) /* a config file larger than this is a mistake */

static _Thread_local char phrase_buf[256];

void
conf_init(struct conf_file *f, const struct conf_cmd *cmds)
{
    size_t n = 0;

    while (cmds[n].name != NULL) {
        n++;
    }
    memset(f, 0, sizeof(*f));
    f->cmds = cmds;
    f->ncmds = n;
    f->lines = xcalloc(n ? n : 1, sizeof(f->lines[0]));
}

void
conf_deinit(struct conf_file *f)
{
    xfree(&f->lines);
    xfree(&f->path);
    xfree(&f->dir);
    f->cmds = NULL;
    f->ncmds = 0;
}

const char *
conf_phrasef(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(phrase_buf, sizeof(phrase_buf), fmt, ap);
    va_end(ap);
    return phrase_buf;
}

int
conf_split(char *line, char **argv, int max, const char **errp)
{
    char *p = line, *start, *r, *w;
    int n = 0;

    for (;;) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0' || *p == '#') {
            return n;
        }
        if (n == max) {
            *errp = "too many words";
            return -1;
        }
        if (*p == '"') {
            start = r = w = p + 1;
            while (*r != '\0' && *r != '"') {
                if (*r == '\\' && (r[1] == '"' || r[1] == '\\')) {
                    r++;
                }
                *w++ = *r++;
            }
            if (*r != '"') {
                *errp = "unterminated quote";
                return -1;
            }
            r++;
            if (*r != '\0' && *r != ' ' && *r != '\t') {
                *errp = "expected a space after a closing quote";
                return -1;
            }
            *w = '\0'; /* w is at most the closing quote, so r is untouched */
            argv[n++] = start;
            p = r;
        } else {
            start = p;
            while (*p != '\0' && *p != ' ' && *p != '\t') {
                p++;
            }
            if (*p != '\0') {
                *p++ = '\0';
            }
            argv[n++] = start;
        }
    }
}

static void
set_source(struct conf_file *f, const char *path)
{
    const char *slash = strrchr(path, '/');

    if (path == f->path) {
        return;
    }
    xfree(&f->path);
    xfree(&f->dir);
    f->path = xstrdup(path);
    if (slash != NULL) {
        f->dir = xstrndup(path, (size_t)(slash - path));
    }
}

char *
conf_resolve_path(const struct conf_file *f, const char *name)
{
    size_t dl, nl;
    char *out;

    if (name[0] == '/' || f->dir == NULL) {
        return xstrdup(name);
    }
    dl = strlen(f->dir);
    nl = strlen(name);
    out = xmalloc(dl + 1 + nl + 1);
    memcpy(out, f->dir, dl);
    out[dl] = '/';
    memcpy(out + dl + 1, name, nl + 1);
    return out;
}

int
conf_errorf(const struct conf_file *f, int line, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (errlen == 0) {
        return -1;
    }
    if (line > 0) {
        n = snprintf(err, errlen, "%s:%d: ", f->path, line);
    } else {
        n = snprintf(err, errlen, "%s: ", f->path);
    }
    if (n >= 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int
cmd_index(const struct conf_file *f, const char *name)
{
    size_t i;

    for (i = 0; i < f->ncmds; i++) {
        if (strcmp(f->cmds[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

int
conf_line_of(const struct conf_file *f, const char *name)
{
    int i = cmd_index(f, name);

    return i < 0 ? 0 : f->lines[i];
}

int
conf_require(const struct conf_file *f, const char *name, char *err, size_t errlen)
{
    if (conf_line_of(f, name) != 0) {
        return 0;
    }
    return conf_errorf(f, 0, err, errlen, "%s is required", name);
}

/* Joins ARGV with single spaces into an xmalloc'd string, for "got '...'". */
static char *
join_args(int argc, char **argv)
{
    size_t len = 1, off = 0;
    char *out;
    int i;

    for (i = 0; i < argc; i++) {
        len += strlen(argv[i]) + 1;
    }
    out = xmalloc(len);
    out[0] = '\0';
    for (i = 0; i < argc; i++) {
        size_t l = strlen(argv[i]);

        if (i > 0) {
            out[off++] = ' ';
        }
        memcpy(out + off, argv[i], l);
        off += l;
    }
    out[off] = '\0';
    return out;
}

/* "path:line: name: phrase[, got 'args']" */
static int
setter_error(const struct conf_file *f, int line, const char *name, const char *phrase, int argc,
             char **argv, char *err, size_t errlen)
{
    char *got;

    if (strncmp(phrase, "expected", 8) != 0) {
        return conf_errorf(f, line, err, errlen, "%s: %s", name, phrase);
    }
    if (argc == 0) {
        return conf_errorf(f, line, err, errlen, "%s: %s, got none", name, phrase);
    }
    got = join_args(argc, argv);
    conf_errorf(f, line, err, errlen, "%s: %s, got '%s'", name, phrase, got);
    free(got);
    return -1;
}

/* NULL if ARGC fits CMD's arity, else a phrase. */
static const char *
check_arity(const struct conf_cmd *cmd, int argc)
{
    int lo = cmd->min_args, hi = cmd->max_args;

    if (lo == 0 && hi == 0) {
        lo = hi = 1;
    } else if (hi == 0) {
        hi = lo;
    }
    if (argc >= lo && (hi < 0 || argc <= hi)) {
        return NULL;
    }
    if (hi < 0) {
        return conf_phrasef("expected at least %d value%s", lo, lo == 1 ? "" : "s");
    }
    if (lo == hi) {
        return conf_phrasef("expected %d value%s", lo, lo == 1 ? "" : "s");
    }
    return conf_phrasef("expected %d to %d values", lo, hi);
}

/* Line being applied, for setters of repeatable directives that remember where each value
 * came from (per thread: loads may run in several threads). */
static __thread int current_line;

int
conf_current_line(void)
{
    return current_line;
}

/* Runs CMD's setter, then resolves a CONF_PATH field. */
static const char *
apply(struct conf_file *f, const struct conf_cmd *cmd, void *obj, int argc, char **argv)
{
    const char *phrase = cmd->set(obj, cmd, argc, argv);
    char **field, *abs;

    if (phrase == NULL && (cmd->flags & CONF_PATH)) {
        field = (char **)((char *)obj + cmd->offset);
        if (*field != NULL) {
            abs = conf_resolve_path(f, *field);
            free(*field);
            *field = abs;
        }
    }
    return phrase;
}

static int
parse_line(struct conf_file *f, int lineno, char *line, void *obj, char *err, size_t errlen)
{
    char *words[CONF_MAX_WORDS];
    const char *phrase = NULL;
    const struct conf_cmd *cmd;
    int n, i;

    n = conf_split(line, words, CONF_MAX_WORDS, &phrase);
    if (n < 0) {
        return conf_errorf(f, lineno, err, errlen, "%s", phrase);
    }
    if (n == 0) {
        return 0;
    }
    i = cmd_index(f, words[0]);
    if (i < 0) {
        return conf_errorf(f, lineno, err, errlen, "unknown directive '%s'", words[0]);
    }
    cmd = &f->cmds[i];
    if (f->lines[i] != 0 && !(cmd->flags & CONF_REPEATABLE)) {
        return conf_errorf(f, lineno, err, errlen, "%s: is a duplicate (first set at line %d)",
                           cmd->name, f->lines[i]);
    }
    phrase = check_arity(cmd, n - 1);
    if (phrase == NULL) {
        current_line = lineno;
        phrase = apply(f, cmd, obj, n - 1, words + 1);
    }
    if (phrase != NULL) {
        return setter_error(f, lineno, cmd->name, phrase, n - 1, words + 1, err, errlen);
    }
    if (f->lines[i] == 0) {
        f->lines[i] = lineno;
    }
    return 0;
}

int
conf_parse_text(struct conf_file *f, const char *path, const char *text, size_t len, void *obj,
                char *err, size_t errlen)
{
    const char *p = text, *end = text + len, *nl;
    size_t ll;
    char *line;
    int lineno = 0, rc = 0;

    set_source(f, path);
    while (p < end && rc == 0) {
        lineno++;
        nl = memchr(p, '\n', (size_t)(end - p));
        ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (memchr(p, '\0', ll) != NULL) {
            return conf_errorf(f, lineno, err, errlen, "line contains a NUL byte");
        }
        if (ll > 0 && p[ll - 1] == '\r') {
            ll--;
        }
        line = xstrndup(p, ll);
        rc = parse_line(f, lineno, line, obj, err, errlen);
        free(line);
        p = nl ? nl + 1 : end;
    }
    return rc;
}

int
conf_parse_file(struct conf_file *f, const char *path, void *obj, char *err, size_t errlen)
{
    size_t len = 0, cap = 4096, n;
    char *buf;
    FILE *fp;
    int rc;

    set_source(f, path);
    fp = fopen(path, "r");
    if (fp == NULL) {
        return conf_errorf(f, 0, err, errlen, "cannot open: %s", strerror(errno));
    }
    buf = xmalloc(cap);
    for (;;) {
        n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (len < cap) {
            break;
        }
        if (cap >= CONF_MAX_FILE) {
            fclose(fp);
            free(buf);
            return conf_errorf(f, 0, err, errlen, "larger than %d bytes", CONF_MAX_FILE);
        }
        cap *= 2;
        buf = xrealloc(buf, cap);
    }
    if (ferror(fp)) {
        rc = errno;
        fclose(fp);
        free(buf);
        return conf_errorf(f, 0, err, errlen, "cannot read: %s", strerror(rc));
    }
    fclose(fp);
    rc = conf_parse_text(f, path, buf, len, obj, err, errlen);
    free(buf);
    return rc;
}

int
conf_set_defaults(struct conf_file *f, void *obj, char *err, size_t errlen)
{
    char *words[CONF_MAX_WORDS], *copy;
    const char *phrase = NULL;
    size_t i;
    int n;

    for (i = 0; i < f->ncmds; i++) {
        const struct conf_cmd *cmd = &f->cmds[i];

        if (cmd->def == NULL || f->lines[i] != 0) {
            continue;
        }
        copy = xstrdup(cmd->def);
        n = conf_split(copy, words, CONF_MAX_WORDS, &phrase);
        if (n >= 0) {
            phrase = check_arity(cmd, n);
        }
        if (phrase == NULL) {
            phrase = apply(f, cmd, obj, n, words);
        }
        free(copy);
        if (phrase != NULL) {
            return conf_errorf(f, 0, err, errlen, "%s: bad default '%s' (%s)", cmd->name, cmd->def,
                               phrase);
        }
    }
    return 0;
}

/* --- typed setters ---------------------------------------------------------------------- */

static int
has_range(const struct conf_cmd *cmd)
{
    return cmd->min != 0 || cmd->max != 0;
}

static void
fmt_int(int64_t v, char *out, size_t len)
{
    snprintf(out, len, "%lld", (long long)v);
}

/* Largest unit that divides V exactly: "64k", "1m", "1000". */
static void
fmt_size(int64_t v, char *out, size_t len)
{
    static const struct {
        char unit;
        int64_t mult;
    } units[] = {{'g', 1024LL * 1024 * 1024}, {'m', 1024 * 1024}, {'k', 1024}};
    size_t i;

    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (v != 0 && v % units[i].mult == 0) {
            snprintf(out, len, "%lld%c", (long long)(v / units[i].mult), units[i].unit);
            return;
        }
    }
    snprintf(out, len, "%lld", (long long)v);
}

/* Largest unit that divides V (ms) exactly: "1d", "15m", "250ms". */
static void
fmt_duration(int64_t v, char *out, size_t len)
{
    static const struct {
        const char *unit;
        int64_t mult;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    size_t i;

    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (v != 0 && v % units[i].mult == 0) {
            snprintf(out, len, "%lld%s", (long long)(v / units[i].mult), units[i].unit);
            return;
        }
    }
    snprintf(out, len, "%lldms", (long long)v);
}

/* "expected WHAT from MIN to MAX" / "expected WHAT of at least MIN" (max == INT64_MAX). */
static const char *
range_phrase(const struct conf_cmd *cmd, const char *what,
             void (*fmt)(int64_t v, char *out, size_t len))
{
    char lo[32], hi[32];

    fmt(cmd->min, lo, sizeof(lo));
    if (cmd->max == INT64_MAX) {
        return conf_phrasef("expected %s of at least %s", what, lo);
    }
    fmt(cmd->max, hi, sizeof(hi));
    return conf_phrasef("expected %s from %s to %s", what, lo, hi);
}

static int
in_range(const struct conf_cmd *cmd, int64_t v)
{
    return !has_range(cmd) || (v >= cmd->min && v <= cmd->max);
}

const char *
conf_set_string(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    char **field = (char **)((char *)obj + cmd->offset);

    (void)argc;
    if (argv[0][0] == '\0') {
        return "expected a non-empty value";
    }
    free(*field);
    *field = xstrdup(argv[0]);
    return NULL;
}

const char *
conf_set_int(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    int *field = (int *)(void *)((char *)obj + cmd->offset);
    const char *s = argv[0];
    long long v = 0;
    char *end = NULL;
    int good = s[0] == '-' || (s[0] >= '0' && s[0] <= '9');

    (void)argc;
    if (good) {
        errno = 0;
        v = strtoll(s, &end, 10);
        good = *end == '\0' && errno == 0 && v >= INT_MIN && v <= INT_MAX && in_range(cmd, v);
    }
    if (!good) {
        return has_range(cmd) ? range_phrase(cmd, "an integer", fmt_int) : "expected an integer";
    }
    *field = (int)v;
    return NULL;
}

const char *
conf_set_bool(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    static const char *const yes[] = {"on", "yes", "true"}, *const no[] = {"off", "no", "false"};
    int *field = (int *)(void *)((char *)obj + cmd->offset);
    size_t i;

    (void)argc;
    for (i = 0; i < 3; i++) {
        if (strcasecmp(argv[0], yes[i]) == 0) {
            *field = 1;
            return NULL;
        }
        if (strcasecmp(argv[0], no[i]) == 0) {
            *field = 0;
            return NULL;
        }
    }
    return "expected on or off";
}

const char *
conf_set_duration(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    int64_t *field = (int64_t *)(void *)((char *)obj + cmd->offset);
    int64_t v;

    (void)argc;
    if (timeutil_parse_duration_ms(argv[0], &v) != 0) {
        return "expected a duration like 5s or 250ms";
    }
    if (!in_range(cmd, v)) {
        return range_phrase(cmd, "a duration", fmt_duration);
    }
    *field = v;
    return NULL;
}

const char *
conf_set_size(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    int64_t *field = (int64_t *)(void *)((char *)obj + cmd->offset);
    uint64_t v;

    (void)argc;
    if (timeutil_parse_size(argv[0], &v) != 0 || v > (uint64_t)INT64_MAX) {
        return "expected a size like 64k or 1m";
    }
    if (!in_range(cmd, (int64_t)v)) {
        return range_phrase(cmd, "a size", fmt_size);
    }
    *field = (int64_t)v;
    return NULL;
}

/* The matching choice, or NULL. */
static const struct conf_enum *
find_choice(const struct conf_cmd *cmd, const char *word)
{
    const struct conf_enum *e;

    for (e = cmd->choices; e != NULL && e->name != NULL; e++) {
        if (strcmp(e->name, word) == 0) {
            return e;
        }
    }
    return NULL;
}

/* "expected one of a, b, c" */
static const char *
choices_phrase(const struct conf_cmd *cmd)
{
    char list[200];
    size_t off = 0;
    const struct conf_enum *e;
    int n;

    list[0] = '\0';
    for (e = cmd->choices; e != NULL && e->name != NULL && off < sizeof(list); e++) {
        n = snprintf(list + off, sizeof(list) - off, "%s%s", off ? ", " : "", e->name);
        if (n < 0) {
            break;
        }
        off += (size_t)n;
    }
    return conf_phrasef("expected one of %s", list);
}

const char *
conf_set_enum(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    int *field = (int *)(void *)((char *)obj + cmd->offset);
    const struct conf_enum *e = find_choice(cmd, argv[0]);

    (void)argc;
    if (e == NULL) {
        return choices_phrase(cmd);
    }
    *field = e->value;
    return NULL;
}

const char *
conf_set_enum_name(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    char **field = (char **)((char *)obj + cmd->offset);
    const struct conf_enum *e = find_choice(cmd, argv[0]);

    (void)argc;
    if (e == NULL) {
        return choices_phrase(cmd);
    }
    free(*field);
    *field = xstrdup(e->name);
    return NULL;
}
