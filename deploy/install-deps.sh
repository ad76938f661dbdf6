#!/bin/bash
# install-deps.sh - installs the Debian 12 packages s3tee builds, tests and demos with.
# Idempotent and quick when everything is there: only missing packages are fetched.
set -euo pipefail
PKGS=(
  build-essential pkg-config
  libevent-dev libnghttp2-dev libssl-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev
  redis-server
  ceph-mon ceph-osd radosgw ceph-common
  python3-boto3 python3-pytest awscli s3cmd rclone curl nghttp2-client openssl
  nginx libnginx-mod-http-dav-ext wrk
  clang libclang-rt-14-dev iproute2 procps psmisc gdb
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages ${missing[*]}; run as root" >&2; exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The image's pyenv python ships boto3 1.43, awscli v1 and moto; a bare Debian machine has none
# of them, and the tests that need them say so and use Debian's clients instead.
exit 0
