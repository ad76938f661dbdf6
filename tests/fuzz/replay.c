/*
 * replay.c - main() for a fuzz target built without libFuzzer (gcc, `make unit`): runs
 * LLVMFuzzerTestOneInput over every file of tests/fuzz/corpus/<target>/ and
 * tests/fuzz/regressions/<target>/ (or over the files and directories given), and prints
 * TAP like the unit tests. The target is the binary's name (build/tests/fuzz/<target>). An
 * input that breaks an invariant aborts the run; run the binary with -v to see which file.
 *   build/tests/fuzz/http1 [-v] [FILE|DIR...]    (from the top directory)
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int verbose;

/* Runs one file; returns 0, or -1 when it cannot be read. */
static int
replay_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (fp == NULL) {
        fprintf(stderr, "# %s: %s\n", path, strerror(errno));
        return -1;
    }
    do {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap);
            if (buf == NULL) {
                abort();
            }
        }
        n = fread(buf + len, 1, cap - len, fp);
        len += n;
    } while (n > 0);
    fclose(fp);
    if (verbose) {
        fprintf(stderr, "# replay %s (%zu bytes)\n", path, len);
    }
    /* a copy of exactly LEN bytes, so ASan sees any read past the input as libFuzzer would */
    {
        uint8_t *exact = malloc(len ? len : 1);

        if (exact == NULL) {
            abort();
        }
        memcpy(exact, buf, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    free(buf);
    return 0;
}

/* Runs PATH (a file, or every regular file of a directory); *COUNT += inputs run. */
static int
replay_path(const char *path, int *count)
{
    struct stat st;
    struct dirent **names;
    int n, i, rc = 0;

    if (stat(path, &st) != 0) {
        return errno == ENOENT ? 1 : -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return replay_file(path);
    }
    n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        char full[4096];

        if (names[i]->d_name[0] != '.') {
            snprintf(full, sizeof(full), "%s/%s", path, names[i]->d_name);
            if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
                (*count)++;
                rc |= replay_file(full);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int
main(int argc, char **argv)
{
    int i, count = 0, rc, test = 0, failed = 0;
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    char dir[512];

    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        verbose = 1;
        argc--;
        argv++;
    }
    if (argc > 1) {
        for (i = 1; i < argc; i++) {
            rc = replay_path(argv[i], &count);
            printf("%sok %d - %s: %s\n", rc == 0 ? "" : "not ", ++test, name, argv[i]);
            failed += rc != 0;
        }
        return failed ? 1 : 0;
    }
    snprintf(dir, sizeof(dir), "tests/fuzz/corpus/%s", name);
    rc = replay_path(dir, &count);
    printf("%sok %d - %s: %d seed inputs replayed\n", rc == 0 && count > 0 ? "" : "not ", ++test,
           name, count);
    failed += rc != 0 || count == 0;
    count = 0;
    snprintf(dir, sizeof(dir), "tests/fuzz/regressions/%s", name);
    rc = replay_path(dir, &count);
    /* no regressions directory (1) is fine */
    printf("%sok %d - %s: %d regression inputs replayed\n", rc == 0 || rc == 1 ? "" : "not ",
           ++test, name, count);
    failed += rc != 0 && rc != 1;
    return failed ? 1 : 0;
}
