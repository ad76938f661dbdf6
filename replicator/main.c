/*
 * main.c - s3tee-replicator: options, configuration, signals, one event loop.
 *
 * SIGTERM/SIGINT: stop reading, give transfers in flight STOP_GRACE_MS to finish and be
 * acknowledged (the rest stays pending in Redis), exit 0; a second signal exits at once.
 * SIGHUP: reopen error_log (for log rotation) and reload credentials_file (site key
 * rotation, README "Rotating a site key"); a credentials file that does not load keeps the
 * running keys.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "common/log.h"
#include "replicator/conf.h"
#include "replicator/resched.h"
#include "replicator/sites.h"
#include "replicator/worker.h"
#include "signing/creds.h"

#define STOP_GRACE_MS 5000

/* Process state the signal handlers need. */
struct app {
    struct event_base *evb; /* the loop */
    struct repl_conf *cf;   /* configuration */
    struct worker *w;       /* the consumer */
    struct resched *rs;     /* scheduled / rebuild resyncs, NULL when none configured */
    int signals;            /* SIGTERM/SIGINT received so far */
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: s3tee-replicator -c FILE [-t]\n"
               "  -c, --config FILE   configuration (see replicator.conf.example)\n"
               "  -t, --test          check the configuration and exit (0 = valid)\n"
               "  -v, --version       print the version\n"
               "  -h, --help          this text\n"
               "signals: SIGTERM stops reading and lets transfers in flight finish (a few\n"
               "seconds at most; the rest stays pending in Redis), then exits 0. SIGHUP\n"
               "reopens error_log and reloads credentials_file.\n");
}

static int
apply_logging(const struct repl_conf *cf)
{
    enum log_level lvl = LOG_INFO;

    if (cf->log_level != NULL && log_level_parse(cf->log_level, &lvl) == 0) {
        log_set_level(lvl);
    }
    if (log_open(cf->error_log) != 0) {
        fprintf(stderr, "s3tee-replicator: cannot open error_log %s: %s\n", cf->error_log,
                strerror(errno));
        return -1;
    }
    return 0;
}

static void
on_stopped(void *arg)
{
    struct app *app = arg;

    event_base_loopexit(app->evb, NULL);
}

/* SIGHUP: the keys of a rotated credentials file take over for every request signed from
 * now on; a file that does not load (or lacks a peer's key) leaves the running keys. */
static void
reload_creds(struct app *app)
{
    struct creds *old;
    char err[1024];

    old = repl_conf_reload_creds(app->cf, err, sizeof(err));
    if (old == NULL) {
        log_error("main", "credentials reload refused, keeping the running keys: %s", err);
        return;
    }
    worker_rekey(app->w); /* the sites and the repairer sign with the new keys */
    creds_destroy(old);
    log_info("main", "credentials reloaded from %s (%zu keys)", app->cf->credentials_file,
             creds_count(app->cf->creds));
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;

    (void)what;
    if (sig == SIGHUP) {
        if (log_open(app->cf->error_log) != 0) {
            log_error("main", "cannot reopen error_log %s: %s", app->cf->error_log,
                      strerror(errno));
        } else {
            log_info("main", "error_log reopened");
        }
        reload_creds(app);
        return;
    }
    if (++app->signals > 1) {
        log_info("main", "signal %d again: exiting now (entries in flight stay pending)", (int)sig);
        event_base_loopexit(app->evb, NULL);
        return;
    }
    log_info("main", "signal %d: stopping", (int)sig);
    worker_stop(app->w, STOP_GRACE_MS, on_stopped, app);
}

static int
write_pid_file(const char *path)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        return -1;
    }
    fprintf(f, "%ld\n", (long)getpid());
    return fclose(f);
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"test", no_argument, NULL, 't'},
                                         {"version", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const int signums[] = {SIGTERM, SIGINT, SIGHUP};
    struct event *sigs[3];
    const char *path = NULL;
    struct app app;
    char err[1024];
    int test_only = 0, opt;
    size_t i;

    while ((opt = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'v':
            printf("s3tee-replicator %s\n", S3TEE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    memset(&app, 0, sizeof(app));
    app.cf = repl_conf_load(path, err, sizeof(err));
    if (app.cf == NULL) {
        fprintf(stderr, "s3tee-replicator: %s\n", err);
        return 1;
    }
    if (test_only) {
        printf("s3tee-replicator: configuration %s is valid\n", path);
        repl_conf_free(app.cf);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (apply_logging(app.cf) != 0) {
        repl_conf_free(app.cf);
        return 1;
    }
    curl_global_init(CURL_GLOBAL_ALL);
    app.evb = event_base_new();
    for (i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(app.evb, signums[i], on_signal, &app);
        evsignal_add(sigs[i], NULL);
    }
    app.w = worker_create(app.evb, app.cf);
    if (app.cf->pid_file != NULL && write_pid_file(app.cf->pid_file) != 0) {
        log_warn("main", "cannot write pid_file %s: %s", app.cf->pid_file, strerror(errno));
    }
    log_info("main", "s3tee-replicator %s: site %s, consumer %s, store %s, %zu peers",
             S3TEE_VERSION, app.cf->site_id, app.cf->consumer, app.cf->upstream, app.cf->npeers);
    worker_start(app.w);
    app.rs = resched_create(app.evb, app.cf);
    event_base_dispatch(app.evb);
    resched_destroy(app.rs);
    worker_destroy(app.w);
    for (i = 0; i < 3; i++) {
        event_free(sigs[i]);
    }
    event_base_free(app.evb);
    if (app.cf->pid_file != NULL) {
        unlink(app.cf->pid_file);
    }
    log_info("main", "stopped");
    repl_conf_free(app.cf);
    curl_global_cleanup();
    return 0;
}
