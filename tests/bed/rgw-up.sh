#!/bin/bash
# rgw-up.sh DIR RGW_PORT ACCESS_KEY SECRET MON_PORT
#
# Brings up a disposable Ceph cluster on loopback for tests: one monitor, one OSD
# backed by memstore (RAM), no manager, no cephx, messenger v1 only, and a radosgw
# (beast) answering S3 on 127.0.0.1:RGW_PORT with one user holding the given keys.
# Nothing outside DIR is touched (no /etc/ceph, no systemd); rgw-down.sh DIR undoes it.
#
# Optional environment:
#   OSD_PORT_MIN   first of 20 ports the OSD may bind (default derived from MON_PORT);
#                  clusters side by side need disjoint ranges or their OSDs meet
#   RGW_SSL_PORT   also serve https on this port, with RGW_SSL_CERT / RGW_SSL_KEY (PEM)
#   RGW_ADDR       address radosgw binds (default 127.0.0.1; the bed's network namespace
#                  mode runs this script inside a namespace and gives its veth address)
#   OSD_BYTES      memstore capacity in bytes (default 2 GiB, taken lazily)
#   CEPH_EXTRA_CONF  lines appended to [global]
#
# On failure it stops whatever it started, keeps DIR, prints the log tails, exits 1.
set -euo pipefail

if [ $# -ne 5 ]; then
    echo "usage: $0 DIR RGW_PORT ACCESS_KEY SECRET MON_PORT" >&2
    exit 2
fi
DIR=$(realpath -m "$1")
RGW_PORT=$2 AK=$3 SK=$4 MON_PORT=$5
OSD_PORT_MIN=${OSD_PORT_MIN:-$((20000 + (MON_PORT % 600) * 20))}
OSD_PORT_MAX=$((OSD_PORT_MIN + 19))
OSD_BYTES=${OSD_BYTES:-2147483648}
RGW_ADDR=${RGW_ADDR:-127.0.0.1}
HERE=$(dirname "$(realpath "$0")")
T0=${EPOCHREALTIME/./}

say() {     # progress line with the seconds since start
    local us=$(( ${EPOCHREALTIME/./} - T0 ))
    printf 'rgw-up[%s] %d.%01ds %s\n' "${DIR##*/}" $((us / 1000000)) $((us / 100000 % 10)) "$*" >&2
}

fail() {
    echo "rgw-up: $*" >&2
    for f in "$DIR"/log/*.log; do
        [ -s "$f" ] || continue
        echo "---- tail of $f" >&2
        tail -n 15 "$f" >&2
    done
    KEEP=1 "$HERE/rgw-down.sh" "$DIR" >/dev/null 2>&1 || true
    exit 1
}
trap 'fail "command failed at line $LINENO"' ERR

port_busy() { (exec 3<>"/dev/tcp/$2/$1") 2>/dev/null; }
for p in "$MON_PORT 127.0.0.1" "$RGW_PORT $RGW_ADDR" ${RGW_SSL_PORT:+"$RGW_SSL_PORT $RGW_ADDR"}; do
    # someone answering there would become part of our cluster or take our traffic
    # shellcheck disable=SC2086  # "PORT ADDR"
    if port_busy $p; then echo "rgw-up: port ${p% *} is already in use" >&2; exit 1; fi
done

rm -rf "$DIR"
mkdir -p "$DIR"/{mon.a,osd.0,run,log,rgw}
FSID=$(cat /proc/sys/kernel/random/uuid)
CONF=$DIR/ceph.conf

# tcp_nodelay=1: beast writes a response head and a small body separately; with Nagle on,
# the body waits for the ACK of the head, which a client on a reused connection (the
# proxy's libcurl pool) delays by 40 ms: every small GET through a proxy took 40+ ms.
FRONTEND="beast endpoint=$RGW_ADDR:$RGW_PORT tcp_nodelay=1"
if [ -n "${RGW_SSL_PORT:-}" ]; then
    FRONTEND="$FRONTEND ssl_endpoint=$RGW_ADDR:$RGW_SSL_PORT"
    FRONTEND="$FRONTEND ssl_certificate=${RGW_SSL_CERT:?RGW_SSL_CERT needed} ssl_private_key=${RGW_SSL_KEY:?RGW_SSL_KEY needed}"
fi

# Notes on the less obvious settings:
# - msgr2 off and the mon address given as v1 explicitly: otherwise a mon on a port
#   other than 6789 is announced as msgr2 and the clients hang.
# - OSD crush/class updates at start off: Pacific may send them before it has the
#   monmap and then dies with "wrong fsid"; we place the OSD in the map ourselves.
# - 8 PGs per pool and a raised per-OSD limit: RGW makes ~8 pools on a single OSD.
# - ms bind port min/max: a private port window per cluster.
# - paxos propose interval: the monitor batches map changes for 1 s by default, and
#   radosgw's first start creates its pools one map change at a time (2 s each);
#   with 50 ms the whole bring-up takes ~3 s instead of ~14 s.
cat >"$CONF" <<CONF
[global]
fsid = $FSID
mon host = v1:127.0.0.1:$MON_PORT
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr2 = false
ms bind port min = $OSD_PORT_MIN
ms bind port max = $OSD_PORT_MAX
auth cluster required = none
auth service required = none
auth client required = none
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
keyring = $DIR/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
${CEPH_EXTRA_CONF:-}
[mon]
mon data = $DIR/mon.\$id
paxos propose interval = 0.05
paxos min wait = 0.01
[osd]
osd data = $DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = $OSD_BYTES
osd crush update on start = false
osd class update on start = false
[client.rgw.a]
rgw data = $DIR/rgw
rgw frontends = $FRONTEND
rgw thread pool size = 64
rgw dns name = localhost
CONF
C=(-c "$CONF")

# Any ceph command may fail now and then on a young cluster: the CLI sometimes sends its
# command before it has the monmap, and the monitor refuses it ("handle_command on fsid
# 0000... != ...", seen by the CLI as "EPERM: problem getting command descriptions").
# So every wait below is a loop that remembers its success, and the commands are retried
# (they are idempotent).
ceph_cmd() {
    local out
    for _ in 1 2 3 4 5 6 7 8; do
        if out=$(timeout 30 ceph "${C[@]}" --connect-timeout 10 "$@" 2>>"$DIR/log/ceph-cli.log"); then
            printf '%s' "$out"
            return 0
        fi
        sleep 0.25
    done
    echo "rgw-up: 'ceph $*' kept failing:" >&2
    tail -n 3 "$DIR/log/ceph-cli.log" >&2
    return 1
}

# monitor
ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v1:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
ceph-mon "${C[@]}" -i a
up=0
for _ in $(seq 60); do
    if [ "$(timeout 15 ceph "${C[@]}" --connect-timeout 10 fsid 2>/dev/null)" = "$FSID" ]; then
        up=1; break
    fi
    sleep 0.25
done
[ $up = 1 ] || fail "monitor on port $MON_PORT did not answer with our fsid"
say "mon up"

# OSD
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(ceph_cmd osd new "$OSD_UUID")
ceph-osd "${C[@]}" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/osd-mkfs.log" 2>&1
ceph_cmd osd crush add-bucket localhost host >/dev/null
ceph_cmd osd crush move localhost root=default >/dev/null
ceph_cmd osd crush add "osd.$OSD_ID" 1.0 host=localhost >/dev/null
up=0
for _ in 1 2 3; do
    if ceph-osd "${C[@]}" -i "$OSD_ID" >>"$DIR/log/osd-start.log" 2>&1; then up=1; break; fi
    sleep 1
done
[ $up = 1 ] || fail "ceph-osd did not start"
up=0
for _ in $(seq 150); do
    # (no `| grep -q`: with pipefail, ceph dying of SIGPIPE would turn a match into a miss)
    dump=$(timeout 10 ceph "${C[@]}" --connect-timeout 10 osd dump 2>/dev/null) || dump=
    if grep -q "^osd.$OSD_ID up" <<<"$dump"; then up=1; break; fi
    sleep 0.2
done
[ $up = 1 ] || fail "osd.$OSD_ID is not up"
say "osd up"

# radosgw: creates its pools on first start, which is most of the wait
radosgw "${C[@]}" -n client.rgw.a
up=0
for _ in $(seq 300); do
    if curl -s -o /dev/null --max-time 2 "http://$RGW_ADDR:$RGW_PORT/"; then up=1; break; fi
    sleep 0.2
done
[ $up = 1 ] || fail "radosgw did not answer on $RGW_ADDR:$RGW_PORT"
say "rgw answers"
up=0
for _ in 1 2 3 4 5; do
    if radosgw-admin "${C[@]}" user create --uid=s3tee-test --display-name="s3tee test" \
        --access-key="$AK" --secret-key="$SK" >>"$DIR/log/user-create.out" 2>&1 ||
        { info=$(radosgw-admin "${C[@]}" user info --uid=s3tee-test 2>/dev/null) &&
          grep -qF "\"$AK\"" <<<"$info"; }; then
        up=1; break
    fi
    sleep 0.5
done
[ $up = 1 ] || fail "radosgw-admin user create failed: $(tail -n 3 "$DIR/log/user-create.out")"
say "user created"
echo "rgw up: http://$RGW_ADDR:$RGW_PORT${RGW_SSL_PORT:+ https://$RGW_ADDR:$RGW_SSL_PORT} key=$AK dir=$DIR"
