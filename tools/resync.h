/*
 * resync.h - `s3tee resync`: anti-entropy between this site and one peer for one bucket
 * (notes/replication.md, "Resync"). A merge-join of the two sorted listings, one page of
 * each in memory; every divergent key is named on stdout and repaired towards the highest
 * stamp with replica writes that carry the original stamps.
 */
#ifndef S3TEE_TOOLS_RESYNC_H
#define S3TEE_TOOLS_RESYNC_H

/*
 * resync_main - runs `s3tee resync ARGS` (ARGV[0] is "resync"). Returns the exit code:
 * 0 converged (or, with --dry-run, nothing to change), 1 errors or changes left, 2 usage.
 */
int resync_main(int argc, char **argv);

#endif
