#!/bin/bash
# rgw-down.sh DIR - stops the daemons rgw-up.sh started in DIR (found through their pid
# files, and only if the process still runs with DIR's config), then removes DIR.
# KEEP=1 keeps DIR (logs) in place. Safe to call twice or on a half-started DIR.
# radosgw takes ~5 s to honour SIGTERM (its lifecycle thread sleeps); it holds no data
# of its own (everything is in the OSD), so it gets 1 s before SIGKILL.
set -uo pipefail
if [ $# -ne 1 ]; then echo "usage: $0 DIR" >&2; exit 2; fi
DIR=$(realpath -m "$1")
[ -d "$DIR" ] || exit 0

ours() {    # pid $1 runs with our ceph.conf (guards against a recycled pid)
    local cmd
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) && [[ $cmd == *"$DIR/ceph.conf"* ]]
}
rc=0
for name in client.rgw.a osd.0 mon.a; do     # gateway first, monitor last
    pid=$(cat "$DIR/run/$name.pid" 2>/dev/null) || continue
    ours "$pid" || continue
    grace=50
    [ "$name" = client.rgw.a ] && grace=10
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq $grace); do ours "$pid" || break; sleep 0.1; done
    if ours "$pid"; then
        [ "$name" = client.rgw.a ] || echo "rgw-down: $name (pid $pid) ignored SIGTERM, killing" >&2
        kill -KILL "$pid" 2>/dev/null
        for _ in $(seq 20); do ours "$pid" || break; sleep 0.1; done
        ours "$pid" && rc=1
    fi
done
[ "${KEEP:-0}" = 1 ] || rm -rf "$DIR"
exit $rc
