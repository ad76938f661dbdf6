/*
 * conf.h - generic line-based config loader: tokenizer, typed setters, file:line errors.
 *
 * A config file is a list of lines "directive arg1 arg2 ...". Words are separated by spaces
 * or tabs; a word may be double-quoted to hold spaces or '#' ("a b", with \" and \\ escapes).
 * '#' at the start of a line or after whitespace starts a comment. Blank lines are skipped.
 *
 * Each binary owns a table of struct conf_cmd (directive name, setter, field offset, flags,
 * default) and a validator. The loader:
 *
 *   conf_parse_file()  -> for each line: find the cmd, check arity and duplicates, call its
 *                         setter, remember the line (conf_line_of)
 *   conf_set_defaults() -> call the setter with cmd->def for every directive not given
 *   (binary's validator: required directives, cross-field checks, using conf_errorf)
 *
 * Errors, one per load (the loader stops at the first):
 *   proxy.conf:3: unknown directive 'lisen'
 *   proxy.conf:12: upstream_connect_timeout: expected a duration like 5s or 250ms, got 'soon'
 *   proxy.conf:7: workers: is a duplicate (first set at line 4)
 *   proxy.conf: upstream is required
 */
#ifndef S3TEE_CONF_H
#define S3TEE_CONF_H

#include <stddef.h>
#include <stdint.h>

struct conf_cmd;

/*
 * A setter parses ARGV[0..ARGC-1] (the words after the directive name; the loader has
 * checked ARGC against the cmd's arity) into OBJ + CMD->offset. Returns NULL on success or
 * a phrase (static, or from conf_phrasef()). A phrase starting with "expected" gets
 * ", got '<args>'" appended by the loader; any other phrase is printed as is.
 */
typedef const char *(*conf_set_fn)(void *obj, const struct conf_cmd *cmd, int argc, char **argv);

/* One accepted word of an enum directive and the value it stands for. */
struct conf_enum {
    const char *name; /* word in the file, e.g. "debug"; NULL ends the table */
    int value;        /* stored by conf_set_enum */
};

#define CONF_REPEATABLE 0x01 /* may appear more than once (the setter accumulates) */
#define CONF_PATH 0x02       /* char * field: a relative value is resolved against the
                                config file's directory once the setter has run */

struct conf_cmd {
    const char *name;               /* directive; NULL name ends the table */
    conf_set_fn set;                /* parser for the arguments */
    size_t offset;                  /* field in the object, for the typed setters */
    int flags;                      /* CONF_REPEATABLE | CONF_PATH */
    const char *def;                /* default, as it would be written in the file (NULL = none) */
    int64_t min;                    /* inclusive range for int, size, duration; */
    int64_t max;                    /*   min == max == 0 means no range */
    int min_args;                   /* arity; 0 and 0 mean exactly one argument, */
    int max_args;                   /*   max_args < 0 means no upper limit */
    const struct conf_enum *choices; /* for conf_set_enum / conf_set_enum_name */
};

/*
 * One table entry, then optional designated fields (and the table's end marker):
 *   CONF_CMD("workers", conf_set_int, offsetof(struct proxy_conf, workers), .def = "0",
 *            .min = 0, .max = 256),
 *   CONF_END
 */
#define CONF_CMD(n, fn, off, ...) {.name = (n), .set = (fn), .offset = (off), __VA_ARGS__}
#define CONF_END {.name = NULL}

/* Most words on one line (directive included); more is an error. */
#define CONF_MAX_WORDS 64

/* Loader state for one file; the validator reads lines and paths from it. */
struct conf_file {
    const struct conf_cmd *cmds; /* the table (borrowed) */
    size_t ncmds;                /* entries before the NULL name */
    int *lines;                  /* per cmd: line it was first set on, 0 = never (owned) */
    char *path;                  /* file name as given, used in messages (owned) */
    char *dir;                   /* directory of path, NULL when path has no '/' (owned) */
};

/* Prepares F for the table CMDS (which must outlive F). Release with conf_deinit(). */
void conf_init(struct conf_file *f, const struct conf_cmd *cmds);
void conf_deinit(struct conf_file *f);

/*
 * conf_parse_file - read PATH and apply each line to OBJ.
 * Returns 0, or -1 with a one-line message in ERR (the loader stops at the first error;
 * fields set so far stay set and are the caller's to free).
 */
int conf_parse_file(struct conf_file *f, const char *path, void *obj, char *err, size_t errlen);

/*
 * conf_parse_text - the same over TEXT[0..LEN) (need not be NUL-terminated); PATH names it
 * in messages and anchors relative CONF_PATH values. Used by conf_parse_file and fuzzers.
 */
int conf_parse_text(struct conf_file *f, const char *path, const char *text, size_t len, void *obj,
                    char *err, size_t errlen);

/*
 * conf_set_defaults - for every cmd with a def that was not set, run its setter on def.
 * Returns 0, or -1 with "path: NAME: bad default 'x' (phrase)" (a bug in the table).
 */
int conf_set_defaults(struct conf_file *f, void *obj, char *err, size_t errlen);

/* Line the directive NAME was first set on, or 0 if it was not set (or is unknown). */
int conf_line_of(const struct conf_file *f, const char *name);
/* Inside a setter: the line being applied (repeatable directives record it per value). */
int conf_current_line(void);

/*
 * conf_errorf - write "path:LINE: message" into ERR (or "path: message" when LINE is 0).
 * Returns -1, so a validator can "return conf_errorf(...)".
 */
int conf_errorf(const struct conf_file *f, int line, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * conf_require - if NAME was not set, write "path: NAME is required" and return -1; else 0.
 */
int conf_require(const struct conf_file *f, const char *name, char *err, size_t errlen);

/* NAME resolved against F's directory (unchanged if absolute or F has no directory); xmalloc'd. */
char *conf_resolve_path(const struct conf_file *f, const char *name);

/*
 * conf_split - split LINE in place into words (quotes and comments as described above).
 * Returns the number of words stored in ARGV (at most MAX), 0 for a blank or comment line,
 * or -1 with *ERRP = "unterminated quote", "expected a space after a closing quote" or
 * "too many words". Words point into LINE.
 */
int conf_split(char *line, char **argv, int max, const char **errp);

/*
 * conf_phrasef - format a setter's phrase into a per-thread buffer (valid until the next
 * call on this thread; the loader copies it into ERR straight away).
 */
const char *conf_phrasef(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Typed setters; each documents the field type at CMD->offset. */
/* char *: a non-empty string (xstrdup'd; a previous value is freed). */
const char *conf_set_string(void *obj, const struct conf_cmd *cmd, int argc, char **argv);
/* int: decimal, within [min, max] when a range is given, else within int. */
const char *conf_set_int(void *obj, const struct conf_cmd *cmd, int argc, char **argv);
/* int: 1 for on|yes|true, 0 for off|no|false (any case). */
const char *conf_set_bool(void *obj, const struct conf_cmd *cmd, int argc, char **argv);
/* int64_t milliseconds: "250ms", "5s", "15m", "1h", "1d"; a bare number is seconds. */
const char *conf_set_duration(void *obj, const struct conf_cmd *cmd, int argc, char **argv);
/* int64_t bytes: "512", "64k", "1m", "2g" (powers of 1024, optional trailing b). */
const char *conf_set_size(void *obj, const struct conf_cmd *cmd, int argc, char **argv);
/* int: the value of the matching cmd->choices entry (exact, case-sensitive). */
const char *conf_set_enum(void *obj, const struct conf_cmd *cmd, int argc, char **argv);
/* char *: the matching cmd->choices name (xstrdup'd; a previous value is freed). */
const char *conf_set_enum_name(void *obj, const struct conf_cmd *cmd, int argc, char **argv);

#endif
