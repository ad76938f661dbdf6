"""repl.py - what replication costs and how fast it is, in one run on loopback.

Three measurements (issue 3, "Benchmark"):

 1. Recording cost. One s3tee-proxy with site_id, a Redis (AOF, appendfsync always) and an
    nginx WebDAV store (the fast store of bench.py, so the store does not hide the proxy's
    own cost). 4 KiB PUTs to distinct keys with wrk (replay_many.lua), 64 connections,
    alternating between a bucket with `bucket_replication ... off` and an async one.
    Printed: PUT/s with replication on / off, and the ratio.
 2. Lag. Two full sites (RGW store, Redis, proxy, one replicator each; tests/bed/sites.py).
    2,000 PUTs of 4 KiB at site a at a steady rate; lag = the moment site b's proxy logged
    the replica PUT as done (the object is readable at b from then on) minus the moment the
    client at a had its acknowledgement. Printed: p50 / p99 / max.
 3. Throughput. Site a's replicator stopped, N objects written at a, the replicator
    started again: objects/s until its backlog is empty, next to the rate the client wrote
    them at a (same stores, same machine).

Not a pass/fail test: targets are marked met / not met (p99 lag < 50 ms, >= 2,000 objects/s
per replicator). Every process shares the machine's CPUs with every other.

    /usr/bin/python3 tests/bench/repl.py [--lag-puts 2000] [--rate 200] [--drain-objects 4000]
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "bed"))
import bed  # noqa: E402
import bench  # noqa: E402
import sites as sitesmod  # noqa: E402

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

TARGET_P99_MS = 50.0
TARGET_OBJS = 2000.0
SMALL = 4096


def say(msg):
    print(f"repl-bench: {msg}", file=sys.stderr, flush=True)


def boto(url, ak, sk, pool=16):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak,
                        aws_secret_access_key=sk,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1},
                                      max_pool_connections=pool))


# ---------------------------------------------------------------------------------------
# 1. recording cost

def raw_put(host, path, body):
    sha = hashlib.sha256(body).hexdigest()
    h = bench.sign("PUT", host, path, sha)
    h["Content-Length"] = str(len(body))
    head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return head.encode() + b"\r\n" + body


def write_many(path, host, bucket, prefix, n, body):
    with open(path, "wb") as f:
        for i in range(n):
            r = raw_put(host, f"/{bucket}/{prefix}{i:07d}", body)
            f.write(b"%d\n" % len(r))
            f.write(r)


def run_wrk_many(url, spec, seconds, conns, threads):
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "--timeout", "10s",
           "-s", str(BENCH_DIR / "replay_many.lua"), url]
    env = dict(os.environ, BENCH_MANY=str(spec), BENCH_THREADS=str(threads))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    line = next((x for x in p.stdout.splitlines() if x.startswith("BENCH ")), None)
    if p.returncode != 0 or line is None:
        raise bench.BenchError(f"wrk {url} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    r = bench.parse_kv(line)
    errors = sum(r[k] for k in r if k.startswith("err_"))
    if errors or r["requests"] == 0:
        raise bench.BenchError(f"wrk {url}: {int(errors)} errors in {int(r['requests'])}: {line}")
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def recording_cost(args, base):
    root = base / "store-root"
    for b in ("rec-off", "rec-on"):
        (root / b).mkdir(parents=True)
    sport, h2port = bed.free_port(), bed.free_port()
    store = bench.Nginx("store", base, bench.STORE_SERVER.format(port=sport, h2port=h2port,
                                                                 root=root))
    store.start([sport, h2port])
    redis = bed.Redis().start()
    proxy = None
    try:
        directives = {
            "workers": args.workers, "access_log": "off", "log_level": "warn",
            "site_id": "a", "site": ["a http://127.0.0.1:1", "b https://127.0.0.1:2"],
            "redis": f"127.0.0.1:{redis.port}", "bucket_replication": "rec-off off",
        }
        proxy = bed.Proxy(upstream=f"http://127.0.0.1:{sport}", store_key=bench.STORE_KEY,
                          clients=[(bench.CLIENT_KEY[0], bench.CLIENT_KEY[1], "*")],
                          directives=directives, directory=base / "proxy",
                          extra_creds=["site b AKSITEBTOA secret-b-to-a",
                                       "peer b AKSITEATOB secret-a-to-b"])
        proxy.start()
        host = f"127.0.0.1:{proxy.port}"
        body = (b"s3tee replication benchmark. " * 200)[:SMALL]
        specs = {}
        for b in ("rec-off", "rec-on"):
            specs[b] = base / f"{b}.reqs"
            write_many(specs[b], host, b, "k", args.rec_keys, body)
        out = {"rec-off": [], "rec-on": []}
        for rnd in range(args.rounds):
            for b in ("rec-off", "rec-on"):
                r = run_wrk_many(f"http://{host}", specs[b], args.seconds, 64, 2)
                out[b].append(r["rps"])
                say(f"recording round {rnd + 1}: {b} {r['rps']:.0f} PUT/s "
                    f"(p99 {r['lat_p99_us'] / 1000:.1f} ms)")
        off, on = statistics.median(out["rec-off"]), statistics.median(out["rec-on"])
        entries = redis.command("XLEN", "s3tee:log")
        return {"put_rps_off": off, "put_rps_on": on, "ratio": on / off, "log_entries": entries}
    finally:
        if proxy is not None:
            proxy.stop(check=False)
        redis.stop(check=False)
        store.stop()


# ---------------------------------------------------------------------------------------
# 2. lag and 3. throughput, on two full sites

def access_entries(proxy):
    text = Path(proxy.access_log).read_text()
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def utc_ms(ts):
    dt = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    return (dt - datetime(1970, 1, 1)).total_seconds() * 1000.0


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def lag(args, d, rate=None, bucket="lag"):
    a, b = d["a"], d["b"]
    rate = rate or args.rate
    for s in (a, b):
        boto(s.store.url, s.store.access_key, s.store.secret).create_bucket(Bucket=bucket)
    c = boto(a.proxy.url, "AKIDCLIENT", "secretclient", pool=4)
    body = (b"lag " * 1024)[:SMALL]
    acks = {}
    put_ms = []   # the client's own PUT at a, send to answer: the same stores' latency
    interval = 1.0 / rate
    lock = threading.Lock()

    def writer(tid, n_threads):
        t_next = time.time()
        for i in range(tid, args.lag_puts, n_threads):
            key = f"k{i:06d}"
            t_sent = time.time() * 1000.0
            c.put_object(Bucket=bucket, Key=key, Body=body)
            with lock:
                acks[key] = time.time() * 1000.0
                put_ms.append(acks[key] - t_sent)
            t_next += interval * n_threads
            delay = t_next - time.time()
            if delay > 0:
                time.sleep(delay)

    # warm-up, not counted: the replicator's first transfers open its connections
    for i in range(50):
        c.put_object(Bucket=bucket, Key=f"warm{i}", Body=body)
    if not d.wait_drained(60):
        raise bench.BenchError("lag: the warm-up did not drain in 60 s")
    t0 = time.time()
    m0 = bench.machine_busy()
    threads = [threading.Thread(target=writer, args=(i, 4)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    m1 = bench.machine_busy()
    busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1])   # share of all CPUs in use
    if not d.wait_drained(120):
        raise bench.BenchError("lag: site a's backlog did not drain in 120 s")
    time.sleep(0.3)
    applied = {}
    for e in access_entries(b.proxy):
        if e.get("bucket") == bucket and e.get("method") == "PUT" and e.get("status") == 200 \
                and str(e.get("access_key", "")).startswith("AKSITE"):
            applied.setdefault(e["key"], utc_ms(e["time"]))
    missing = [k for k in acks if k not in applied]
    if missing:
        raise bench.BenchError(f"lag: {len(missing)} objects never applied at b, e.g. {missing[:3]}")
    lags = [applied[k] - acks[k] for k in acks]
    worst = sorted(acks, key=lambda k: applied[k] - acks[k])[-5:]
    say("lag: slowest " + ", ".join(f"{k} {applied[k] - acks[k]:.0f} ms" for k in worst))
    return {"puts": len(acks), "rate": len(acks) / elapsed, "p50_ms": pct(lags, 50),
            "p99_ms": pct(lags, 99), "max_ms": max(lags), "min_ms": min(lags),
            "client_put_p50_ms": pct(put_ms, 50), "client_put_p99_ms": pct(put_ms, 99),
            "slowest": [(k, applied[k] - acks[k]) for k in worst], "machine_busy": busy}


def throughput(args, d):
    a, b = d["a"], d["b"]
    for s in (a, b):
        boto(s.store.url, s.store.access_key, s.store.secret).create_bucket(Bucket="thr")
    a.replicator.stop()
    c = boto(a.proxy.url, "AKIDCLIENT", "secretclient", pool=32)
    body = (b"thr " * 1024)[:SMALL]
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: c.put_object(Bucket="thr", Key=f"k{i:06d}", Body=body),
                    range(args.drain_objects)))
    write_s = time.time() - t0
    backlog = d.backlog("a")
    t0 = time.time()
    a.replicator.start()
    # who spends the CPU while the backlog drains: the replicator's share per object is
    # the rate one replicator could keep on a core of its own
    groups = {"replicator_a": [a.replicator.proc.pid], "proxy_b": [b.proxy.pid],
              "stores": sorted({pid for s in (a, b) for pid in s.store.pids().values()}),
              "redis": [a.redis.pid, b.redis.pid]}
    cpu0 = {g: bench.cpu_seconds(p) for g, p in groups.items()}
    while d.backlog("a") > 0:
        if time.time() - t0 > 300:
            raise bench.BenchError("throughput: backlog did not drain in 300 s")
        time.sleep(0.02)
    drain_s = time.time() - t0
    cpu_us = {g: (bench.cpu_seconds(p) - cpu0[g]) * 1e6 / args.drain_objects
              for g, p in groups.items()}
    got = len(boto(b.store.url, b.store.access_key, b.store.secret).list_objects_v2(
        Bucket="thr", MaxKeys=1000).get("Contents", []))
    if got == 0:
        raise bench.BenchError("throughput: nothing arrived at b")
    return {"objects": args.drain_objects, "backlog": backlog, "write_rps": args.drain_objects / write_s,
            "drain_s": drain_s, "objs_per_s": args.drain_objects / drain_s,
            "cpu_us_per_object": cpu_us,
            "objs_per_replicator_cpu_s": 1e6 / cpu_us["replicator_a"] if cpu_us["replicator_a"] else 0.0}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lag-puts", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200.0, help="PUT/s at site a for the lag run")
    ap.add_argument("--light-rate", type=float, default=50.0,
                    help="PUT/s of a second lag run (0: none)")
    ap.add_argument("--drain-objects", type=int, default=4000)
    ap.add_argument("--rec-keys", type=int, default=40000, help="distinct keys per bucket")
    ap.add_argument("--seconds", type=int, default=5, help="per recording-cost round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--skip", action="append", default=[], choices=["recording", "lag", "throughput"])
    args = ap.parse_args(argv)
    for tool in ("wrk", "nginx", "redis-server"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            say(f"missing {tool}: run deploy/install-deps.sh")
            return 2
    res = {}
    base = Path(tempfile.mkdtemp(prefix="s3tee-repl-bench-", dir="/dev/shm"))
    try:
        if "recording" not in args.skip:
            res["recording"] = recording_cost(args, base)
        if "lag" not in args.skip or "throughput" not in args.skip:
            # loopback: the published figures were measured there (namespaces add relays)
            d = sitesmod.Deployment(["a", "b"], proxy_directives={"log_level": "warn"},
                                    replicator_directives={"log_level": "warn"},
                                    netns=False).start()
            try:
                if "lag" not in args.skip:
                    res["lag"] = lag(args, d)
                    if args.light_rate > 0:
                        # the same at a rate that leaves the 2 cores room: tells the cost of
                        # a replica write from the queueing of a saturated machine
                        res["lag_light"] = lag(args, d, rate=args.light_rate, bucket="lag-light")
                if "throughput" not in args.skip:
                    res["throughput"] = throughput(args, d)
            finally:
                d.stop()
    finally:
        subprocess.run(["rm", "-rf", str(base)])
    print()
    print("| measure | figure | baseline (same run) | target | met |")
    print("|---|---|---|---|---|")
    if "recording" in res:
        r = res["recording"]
        print(f"| 4 KiB PUT/s, replication on vs off (nginx store) | {r['put_rps_on']:.0f} "
              f"| {r['put_rps_off']:.0f} off | ratio {r['ratio']:.2f} | - |")
    for name in ("lag", "lag_light"):
        if name not in res:
            continue
        r = res[name]
        print(f"| lag a->b, {r['puts']} PUTs of 4 KiB at {r['rate']:.0f}/s "
              f"(machine {r['machine_busy']:.0%} busy): p50 / p99 / max "
              f"| {r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.1f} ms "
              f"| client's own PUT at a: p50 {r['client_put_p50_ms']:.1f}, "
              f"p99 {r['client_put_p99_ms']:.1f} ms "
              f"| p99 < {TARGET_P99_MS:.0f} ms | {'yes' if r['p99_ms'] < TARGET_P99_MS else 'no'} |")
    if "throughput" in res:
        r = res["throughput"]
        print(f"| objects/s, one replicator draining {r['objects']} x 4 KiB (RGW stores) "
              f"| {r['objs_per_s']:.0f} | client wrote them at {r['write_rps']:.0f}/s "
              f"| >= {TARGET_OBJS:.0f} | {'yes' if r['objs_per_s'] >= TARGET_OBJS else 'no'} |")
        cu = r["cpu_us_per_object"]
        print(f"| CPU per replicated object while draining: replicator / receiving proxy / "
              f"stores (RGW, OSD, MON, both sites) / Redis (both) "
              f"| {cu['replicator_a']:.0f} / {cu['proxy_b']:.0f} / {cu['stores']:.0f} / "
              f"{cu['redis']:.0f} us | - | - | - |")
        print(f"| objects per CPU-second of the replicator (its ceiling on a core of its own) "
              f"| {r['objs_per_replicator_cpu_s']:.0f} | - | >= {TARGET_OBJS:.0f} "
              f"| {'yes' if r['objs_per_replicator_cpu_s'] >= TARGET_OBJS else 'no'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
