#!/bin/bash
# demo.sh - `make demo`: two s3tee sites on loopback; write at one, read at the other.
set -euo pipefail
cd "$(dirname "$0")/../.."
export S3TEE_BUILD=${S3TEE_BUILD:-$PWD/build}
exec /usr/bin/python3 tests/bed/demo.py "$@"
