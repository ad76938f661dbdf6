#!/bin/bash
# run.sh - the s3tee benchmark (make bench): s3tee-proxy next to nginx proxy_pass and
# direct nginx, on loopback. Prints a table with ratios against the same run's baselines
# and marks the targets met / not met. Not a pass/fail test: the exit status is non-zero
# only when the benchmark itself broke.
#
#   tests/bench/run.sh [bench.py options]       e.g. --seconds 8 --rounds 5, --no-h2,
#                                               --profile-dir DIR, --json FILE; --help
#   S3TEE_BUILD=DIR     the build to measure (default: build/; make sets nothing, so
#                       `make BUILD=build-bench bench` measures build/ unless this is set)
#   S3TEE_BENCH_KEEP=1  keep the run directory (configs, logs) under /dev/shm
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${S3TEE_BUILD:=$repo/build}"
export S3TEE_BUILD

missing=()
for tool in nginx wrk h2load curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ! /usr/bin/python3 -c 'import botocore' 2>/dev/null; then
  missing+=("python3-botocore")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: missing ${missing[*]}: run deploy/install-deps.sh (make deps)" >&2
  exit 2
fi
if [ ! -x "$S3TEE_BUILD/s3tee-proxy" ]; then
  echo "bench: $S3TEE_BUILD/s3tee-proxy is not built: run make (BUILD=...)" >&2
  exit 2
fi
if nm "$S3TEE_BUILD/s3tee-proxy" 2>/dev/null | grep -q __asan_init; then
  echo "bench: $S3TEE_BUILD is a sanitizer build; measure a plain one (make BUILD=build-bench)" >&2
  exit 2
fi
# The compiler records its flags with -g; say so when the build is not optimised.
producer=$(strings -a "$S3TEE_BUILD/s3tee-proxy" 2>/dev/null | grep -m1 '^GNU C' || true)
case "$producer" in
  *" -O0"*) echo "bench: warning: $S3TEE_BUILD is an -O0 build ($producer)" >&2 ;;
  "GNU C"*" -O"*|"") ;;
  *) echo "bench: warning: $S3TEE_BUILD was built without -O ($producer)" >&2 ;;
esac
# Many connections: wrk, nginx and the proxy each need a few hundred descriptors.
ulimit -n 65536 2>/dev/null || true

echo "bench: measuring $S3TEE_BUILD/s3tee-proxy ($(nproc) CPUs, shared by client, proxies and store)" >&2
exec /usr/bin/python3 "$here/bench.py" "$@"
