/* log.h - leveled diagnostics on stderr (or a file); access logs live in proxy/accesslog. */
#ifndef S3TEE_LOG_H
#define S3TEE_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Process-wide; set once at start (and on reload) before threads log. */
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parses "error|warn|info|debug"; returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);
/* Redirects diagnostics to PATH (append); NULL or "stderr" means stderr. Returns 0 or -1. */
int log_open(const char *path);

/*
 * log_msg - one line: "2026-11-22T10:00:00.123Z LEVEL [component] message".
 * Messages name the bucket, key and site involved and never carry secrets or signatures.
 */
void log_msg(enum log_level lvl, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(comp, ...) log_msg(LOG_ERROR, comp, __VA_ARGS__)
#define log_warn(comp, ...) log_msg(LOG_WARN, comp, __VA_ARGS__)
#define log_info(comp, ...)                                                                        \
    do {                                                                                           \
        if (log_get_level() >= LOG_INFO)                                                           \
            log_msg(LOG_INFO, comp, __VA_ARGS__);                                                  \
    } while (0)
#define log_debug(comp, ...)                                                                       \
    do {                                                                                           \
        if (log_get_level() >= LOG_DEBUG)                                                          \
            log_msg(LOG_DEBUG, comp, __VA_ARGS__);                                                 \
    } while (0)

#endif
