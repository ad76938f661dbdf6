/* Unit tests for common/conf.c: splitting, every typed setter, defaults and exact messages. */
#include "common/conf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/xalloc.h"
#include "test.h"

struct t {
    char *name;    /* conf_set_string */
    int count;     /* conf_set_int, 1..100 */
    int anyint;    /* conf_set_int, no range */
    int flag;      /* conf_set_bool */
    int64_t timeout_ms; /* conf_set_duration, 1ms..1h */
    int64_t any_ms;     /* conf_set_duration, no range */
    int64_t size;  /* conf_set_size, >= 64k */
    int64_t anysize; /* conf_set_size, no range */
    int mode;      /* conf_set_enum */
    char *level;   /* conf_set_enum_name */
    char *file;    /* conf_set_string + CONF_PATH */
    char **tags;   /* custom, repeatable */
    size_t ntags;
    int a, b;      /* custom, two arguments */
    int nwords;    /* custom, one or more arguments */
};

static const struct conf_enum modes[] = {{"slow", 1}, {"fast", 2}, {"auto", 3}, {NULL, 0}};
static const struct conf_enum levels[] = {
    {"error", 0}, {"warn", 1}, {"info", 2}, {"debug", 3}, {NULL, 0}};

static const char *
set_tag(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct t *o = obj;

    (void)cmd;
    (void)argc;
    o->tags = xrealloc(o->tags, (o->ntags + 1) * sizeof(o->tags[0]));
    o->tags[o->ntags++] = xstrdup(argv[0]);
    return NULL;
}

static const char *
set_pair(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct t *o = obj;

    (void)cmd;
    (void)argc;
    o->a = atoi(argv[0]);
    o->b = atoi(argv[1]);
    if (o->a > o->b) {
        return "must be ascending";
    }
    if (o->a == o->b) {
        return conf_phrasef("expected two different numbers, not %d twice", o->a);
    }
    return NULL;
}

static const char *
set_words(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    (void)argv;
    ((struct t *)obj)->nwords = argc;
    return NULL;
}

#define F(field) offsetof(struct t, field)
static const struct conf_cmd cmds[] = {
    CONF_CMD("name", conf_set_string, F(name)),
    CONF_CMD("count", conf_set_int, F(count), .def = "10", .min = 1, .max = 100),
    CONF_CMD("anyint", conf_set_int, F(anyint)),
    CONF_CMD("flag", conf_set_bool, F(flag), .def = "on"),
    CONF_CMD("timeout", conf_set_duration, F(timeout_ms), .def = "30s", .min = 1, .max = 3600000),
    CONF_CMD("any_timeout", conf_set_duration, F(any_ms)),
    CONF_CMD("size", conf_set_size, F(size), .def = "1m", .min = 65536, .max = INT64_MAX),
    CONF_CMD("anysize", conf_set_size, F(anysize)),
    CONF_CMD("mode", conf_set_enum, F(mode), .choices = modes),
    CONF_CMD("level", conf_set_enum_name, F(level), .def = "info", .choices = levels),
    CONF_CMD("file", conf_set_string, F(file), .flags = CONF_PATH),
    CONF_CMD("tag", set_tag, 0, .flags = CONF_REPEATABLE),
    CONF_CMD("pair", set_pair, 0, .min_args = 2),
    CONF_CMD("words", set_words, 0, .min_args = 1, .max_args = -1),
    CONF_CMD("some", set_words, 0, .min_args = 1, .max_args = 3),
    CONF_END,
};

static struct conf_file F;
static struct t T;
static char err[512];

static void
reset(void)
{
    size_t i;

    conf_deinit(&F);
    free(T.name);
    free(T.level);
    free(T.file);
    for (i = 0; i < T.ntags; i++) {
        free(T.tags[i]);
    }
    free(T.tags);
    memset(&T, 0, sizeof(T));
    err[0] = '\0';
}

/* Parses TEXT as file PATH into a fresh T; returns conf_parse_text's result. */
static int
load_as(const char *path, const char *text)
{
    reset();
    conf_init(&F, cmds);
    return conf_parse_text(&F, path, text, strlen(text), &T, err, sizeof(err));
}

static int
load(const char *text)
{
    return load_as("t.conf", text);
}

/* Expects TEXT to fail with exactly WANT. */
static void
fails(const char *text, const char *want)
{
    int rc = load(text);

    ok(rc == -1, "refused: %s", want);
    ok_str(err, want, "message: %s", want);
}

static void
test_split(void)
{
    char line[256], *w[8];
    const char *e = NULL;
    int n;

    strcpy(line, "  listen\t127.0.0.1:80   # comment");
    n = conf_split(line, w, 8, &e);
    ok(n == 2 && strcmp(w[0], "listen") == 0 && strcmp(w[1], "127.0.0.1:80") == 0,
       "split: words, tabs, trailing comment");
    strcpy(line, "# only a comment");
    ok(conf_split(line, w, 8, &e) == 0, "split: comment line has no words");
    strcpy(line, "   \t ");
    ok(conf_split(line, w, 8, &e) == 0, "split: blank line has no words");
    strcpy(line, "a#b \"c # d\" #e");
    n = conf_split(line, w, 8, &e);
    ok(n == 2 && strcmp(w[0], "a#b") == 0 && strcmp(w[1], "c # d") == 0,
       "split: '#' inside a word or quotes is not a comment");
    strcpy(line, "x \"say \\\"hi\\\" \\\\ \\n\" \"\"");
    n = conf_split(line, w, 8, &e);
    ok(n == 3 && strcmp(w[1], "say \"hi\" \\ \\n") == 0 && strcmp(w[2], "") == 0,
       "split: escapes \\\" and \\\\, other backslashes literal, empty quotes");
    strcpy(line, "a b c d");
    ok(conf_split(line, w, 3, &e) == -1 && strcmp(e, "too many words") == 0, "split: too many");
    strcpy(line, "a \"b");
    ok(conf_split(line, w, 8, &e) == -1 && strcmp(e, "unterminated quote") == 0,
       "split: unterminated quote");
    strcpy(line, "a \"b\"c");
    ok(conf_split(line, w, 8, &e) == -1 &&
           strcmp(e, "expected a space after a closing quote") == 0,
       "split: text glued to a closing quote");
}

static void
test_strings_and_comments(void)
{
    ok(load("name hello\n") == 0 && strcmp(T.name, "hello") == 0, "string");
    ok(load("name \"hello world\"") == 0 && strcmp(T.name, "hello world") == 0,
       "quoted string with a space, no final newline");
    ok(load("name \"a \\\"q\\\" \\\\ b\"\n") == 0 && strcmp(T.name, "a \"q\" \\ b") == 0,
       "quoted string with escapes");
    ok(load("# header\n\n   \n\t# indented comment\nname x # trailing\n") == 0 &&
           strcmp(T.name, "x") == 0 && conf_line_of(&F, "name") == 5,
       "comments and blank lines skipped, line counted");
    ok(load("name a#b\n") == 0 && strcmp(T.name, "a#b") == 0, "'#' inside a word is kept");
    ok(load("name \"a # b\"\n") == 0 && strcmp(T.name, "a # b") == 0, "'#' inside quotes is kept");
    ok(load("name crlf\r\ncount 5\r\n") == 0 && strcmp(T.name, "crlf") == 0 && T.count == 5,
       "CRLF line ends");
    ok(load("") == 0 && T.name == NULL, "empty file");
    fails("name \"\"\n", "t.conf:1: name: expected a non-empty value, got ''");
    fails("name \"abc\n", "t.conf:1: unterminated quote");
    fails("\nname \"a\"b\n", "t.conf:2: expected a space after a closing quote");
}

static void
test_int_bool(void)
{
    char big[400];
    size_t i;

    ok(load("count 42") == 0 && T.count == 42, "int");
    ok(load("count 1\n") == 0 && T.count == 1, "int at min");
    ok(load("count 100\n") == 0 && T.count == 100, "int at max");
    fails("count 0", "t.conf:1: count: expected an integer from 1 to 100, got '0'");
    fails("count 101", "t.conf:1: count: expected an integer from 1 to 100, got '101'");
    fails("count 12x", "t.conf:1: count: expected an integer from 1 to 100, got '12x'");
    fails("count -", "t.conf:1: count: expected an integer from 1 to 100, got '-'");
    fails("count \" 5\"", "t.conf:1: count: expected an integer from 1 to 100, got ' 5'");
    ok(load("anyint -5") == 0 && T.anyint == -5, "int without range takes negatives");
    fails("anyint 99999999999", "t.conf:1: anyint: expected an integer, got '99999999999'");
    fails("anyint +3", "t.conf:1: anyint: expected an integer, got '+3'");

    ok(load("flag off") == 0 && T.flag == 0, "bool off");
    ok(load("flag on") == 0 && T.flag == 1, "bool on");
    ok(load("flag no") == 0 && T.flag == 0, "bool no");
    ok(load("flag yes") == 0 && T.flag == 1, "bool yes");
    ok(load("flag false") == 0 && T.flag == 0, "bool false");
    ok(load("flag TRUE") == 0 && T.flag == 1, "bool TRUE (any case)");
    fails("flag maybe", "t.conf:1: flag: expected on or off, got 'maybe'");

    big[0] = '\0';
    for (i = 0; i <= CONF_MAX_WORDS; i++) {
        strcat(big, "w ");
    }
    strcat(big, "\n");
    fails(big, "t.conf:1: too many words");
}

static void
test_duration_size(void)
{
    ok(load("timeout 250ms") == 0 && T.timeout_ms == 250, "duration ms");
    ok(load("timeout 5s") == 0 && T.timeout_ms == 5000, "duration s");
    ok(load("timeout 7") == 0 && T.timeout_ms == 7000, "duration bare number is seconds");
    ok(load("timeout 1h") == 0 && T.timeout_ms == 3600000, "duration at max");
    fails("timeout soon", "t.conf:1: timeout: expected a duration like 5s or 250ms, got 'soon'");
    fails("timeout 2h", "t.conf:1: timeout: expected a duration from 1ms to 1h, got '2h'");
    fails("timeout 0", "t.conf:1: timeout: expected a duration from 1ms to 1h, got '0'");
    ok(load("any_timeout 0") == 0 && T.any_ms == 0, "duration without range takes 0");
    ok(load("any_timeout 2d") == 0 && T.any_ms == 172800000, "duration d");

    ok(load("size 64k") == 0 && T.size == 65536, "size k");
    ok(load("size 1m") == 0 && T.size == 1048576, "size m");
    ok(load("size 2g") == 0 && T.size == 2147483648LL, "size g");
    fails("size lots", "t.conf:1: size: expected a size like 64k or 1m, got 'lots'");
    fails("size 1k", "t.conf:1: size: expected a size of at least 64k, got '1k'");
    ok(load("anysize 12") == 0 && T.anysize == 12, "size in bytes");
    fails("anysize 99999999999g",
          "t.conf:1: anysize: expected a size like 64k or 1m, got '99999999999g'");
}

static void
test_enums_paths(void)
{
    char *p;

    ok(load("mode fast") == 0 && T.mode == 2, "enum value");
    ok(load("mode auto") == 0 && T.mode == 3, "enum other value");
    fails("mode warp", "t.conf:1: mode: expected one of slow, fast, auto, got 'warp'");
    fails("mode FAST", "t.conf:1: mode: expected one of slow, fast, auto, got 'FAST'");
    ok(load("level debug") == 0 && strcmp(T.level, "debug") == 0, "enum name");
    fails("level loud", "t.conf:1: level: expected one of error, warn, info, debug, got 'loud'");

    ok(load_as("etc/s3tee/t.conf", "file data.txt") == 0 &&
           strcmp(T.file, "etc/s3tee/data.txt") == 0,
       "CONF_PATH: relative resolved against the file's directory");
    ok(load_as("/etc/s3tee/t.conf", "file sub/data.txt") == 0 &&
           strcmp(T.file, "/etc/s3tee/sub/data.txt") == 0,
       "CONF_PATH: relative with a subdirectory");
    ok(load_as("/etc/t.conf", "file /var/data.txt") == 0 && strcmp(T.file, "/var/data.txt") == 0,
       "CONF_PATH: absolute unchanged");
    ok(load_as("t.conf", "file data.txt") == 0 && strcmp(T.file, "data.txt") == 0,
       "CONF_PATH: file in the current directory");
    ok(load_as("/t.conf", "file data.txt") == 0 && strcmp(T.file, "/data.txt") == 0,
       "CONF_PATH: file in /");
    p = conf_resolve_path(&F, "x");
    ok(strcmp(p, "/x") == 0, "conf_resolve_path");
    free(p);
}

static void
test_arity_repeat_custom(void)
{
    ok(load("tag a\ntag b\n#\ntag c") == 0 && T.ntags == 3 && strcmp(T.tags[2], "c") == 0 &&
           conf_line_of(&F, "tag") == 1,
       "repeatable directive accumulates; line is the first");
    fails("count 1\n\ncount 2", "t.conf:3: count: is a duplicate (first set at line 1)");
    fails("# x\n\nlisen 1", "t.conf:3: unknown directive 'lisen'");
    fails("count", "t.conf:1: count: expected 1 value, got none");
    fails("count 1 2", "t.conf:1: count: expected 1 value, got '1 2'");
    fails("pair 1", "t.conf:1: pair: expected 2 values, got '1'");
    ok(load("pair 1 2") == 0 && T.a == 1 && T.b == 2, "two-argument directive");
    fails("pair 1 2 3", "t.conf:1: pair: expected 2 values, got '1 2 3'");
    fails("words", "t.conf:1: words: expected at least 1 value, got none");
    ok(load("words a b c d e") == 0 && T.nwords == 5, "open-ended arity");
    fails("some a b c d", "t.conf:1: some: expected 1 to 3 values, got 'a b c d'");
    ok(load("some a b") == 0 && T.nwords == 2, "bounded arity");
    fails("pair 3 2", "t.conf:1: pair: must be ascending");
    fails("pair 2 2", "t.conf:1: pair: expected two different numbers, not 2 twice, got '2 2'");
    fails("count 1\nflag maybe\nbogus 1", "t.conf:2: flag: expected on or off, got 'maybe'");
    ok(T.count == 1, "the loader stops at the first error, earlier values stay set");
    {
        static const char nul[] = "count 1\nname a\0b\n";

        reset();
        conf_init(&F, cmds);
        ok(conf_parse_text(&F, "t.conf", nul, sizeof(nul) - 1, &T, err, sizeof(err)) == -1,
           "NUL byte stops the load");
        ok_str(err, "t.conf:2: line contains a NUL byte", "NUL byte message");
    }
}

static void
test_lines_defaults_errors(void)
{
    static const struct conf_cmd bad[] = {
        CONF_CMD("count", conf_set_int, F(count), .def = "many", .min = 1, .max = 100),
        CONF_END,
    };
    struct conf_file g;

    ok(load("\n\nname x\ncount 3\n") == 0, "loads");
    ok(conf_line_of(&F, "name") == 3 && conf_line_of(&F, "count") == 4, "conf_line_of set");
    ok(conf_line_of(&F, "flag") == 0, "conf_line_of unset is 0");
    ok(conf_line_of(&F, "nonesuch") == 0, "conf_line_of unknown is 0");
    ok(conf_set_defaults(&F, &T, err, sizeof(err)) == 0, "defaults apply");
    ok(T.count == 3, "defaults do not override a set value");
    ok(T.flag == 1 && T.timeout_ms == 30000 && T.size == 1048576 && strcmp(T.level, "info") == 0,
       "defaults fill unset values");
    ok(conf_line_of(&F, "timeout") == 0, "a defaulted directive still reads as not set");
    ok(T.mode == 0 && T.name != NULL, "directives without a default untouched");

    ok(conf_require(&F, "name", err, sizeof(err)) == 0, "conf_require: set");
    ok(conf_require(&F, "file", err, sizeof(err)) == -1, "conf_require: missing");
    ok_str(err, "t.conf: file is required", "conf_require message");
    ok(conf_errorf(&F, 4, err, sizeof(err), "count: %s", "too low for x") == -1, "conf_errorf");
    ok_str(err, "t.conf:4: count: too low for x", "conf_errorf with a line");
    conf_errorf(&F, 0, err, sizeof(err), "whole file: %d", 7);
    ok_str(err, "t.conf: whole file: 7", "conf_errorf without a line");
    conf_errorf(&F, 4, err, 8, "count: %s", "long message");
    ok_str(err, "t.conf:", "conf_errorf truncates to errlen");

    conf_init(&g, bad);
    ok(conf_parse_text(&g, "b.conf", "", 0, &T, err, sizeof(err)) == 0 &&
           conf_set_defaults(&g, &T, err, sizeof(err)) == -1,
       "bad default is reported");
    ok_str(err, "b.conf: count: bad default 'many' (expected an integer from 1 to 100)",
           "bad default message");
    conf_deinit(&g);
}

static void
test_files(void)
{
    char dir[] = "/tmp/s3tee-conf-XXXXXX", path[128], want[300];
    FILE *fp;

    ok(mkdtemp(dir) != NULL, "temp dir");
    snprintf(path, sizeof(path), "%s/t.conf", dir);
    fp = fopen(path, "w");
    fputs("# test\nname \"from file\"\nfile data.txt\ncount 7\n", fp);
    fclose(fp);

    reset();
    conf_init(&F, cmds);
    ok(conf_parse_file(&F, path, &T, err, sizeof(err)) == 0, "conf_parse_file");
    ok(strcmp(T.name, "from file") == 0 && T.count == 7, "values from the file");
    snprintf(want, sizeof(want), "%s/data.txt", dir);
    ok(strcmp(T.file, want) == 0, "CONF_PATH resolved against the file's directory");
    ok(conf_line_of(&F, "count") == 4, "line numbers from the file");

    fp = fopen(path, "w");
    fputs("count 7\ncount_typo 8\n", fp);
    fclose(fp);
    reset();
    conf_init(&F, cmds);
    ok(conf_parse_file(&F, path, &T, err, sizeof(err)) == -1, "bad file refused");
    snprintf(want, sizeof(want), "%s:2: unknown directive 'count_typo'", path);
    ok_str(err, want, "file name in messages");

    reset();
    conf_init(&F, cmds);
    snprintf(path, sizeof(path), "%s/missing.conf", dir);
    ok(conf_parse_file(&F, path, &T, err, sizeof(err)) == -1, "missing file refused");
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    ok_str(err, want, "missing file message");

    reset();
    conf_init(&F, cmds);
    ok(conf_parse_file(&F, dir, &T, err, sizeof(err)) == -1, "directory refused");
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", dir);
    ok_str(err, want, "directory message");

    snprintf(path, sizeof(path), "%s/t.conf", dir);
    unlink(path);
    rmdir(dir);
    reset();
}

int
main(void)
{
    test_split();
    test_strings_and_comments();
    test_int_bool();
    test_duration_size();
    test_enums_paths();
    test_arity_repeat_custom();
    test_lines_defaults_errors();
    test_files();
    return done_testing();
}
