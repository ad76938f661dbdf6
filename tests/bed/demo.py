"""The README's demo: two sites (RGW store, Redis, s3tee-proxy, s3tee-replicator each) on
loopback. Writes at site a, reads at site b, makes a conflict, and shows what happened.
--keep leaves everything running until Enter is pressed (endpoints are printed)."""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sites  # noqa: E402

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402


def client(url):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="AKIDCLIENT", aws_secret_access_key="secretclient",
                        config=Config(s3={"addressing_style": "path"}))


def step(msg):
    print(f"\n== {msg}", flush=True)


def wait(pred, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if pred():
                return time.time() - t0
        except Exception:
            pass
        time.sleep(0.02)
    raise SystemExit("demo: timed out waiting for replication")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="leave the sites running until Enter")
    args = ap.parse_args()
    step("starting two sites (a, b): RGW store, Redis, s3tee-proxy, s3tee-replicator each")
    d = sites.Deployment(["a", "b"], netns=False).start()   # README: "on loopback"
    try:
        a, b = d["a"], d["b"]
        for s in (a, b):
            print(f"   site {s.id}: s3tee {s.proxy.url}   store {s.store.url}   "
                  f"redis {s.redis.host}:{s.redis.port}")
            boto3.client("s3", endpoint_url=s.store.url, region_name="us-east-1",
                         aws_access_key_id=s.store.access_key,
                         aws_secret_access_key=s.store.secret).create_bucket(Bucket="demo")
        ca, cb = client(a.proxy.url), client(b.proxy.url)

        step("PUT demo/hello.txt at site a")
        ca.put_object(Bucket="demo", Key="hello.txt", Body=b"hello from site a\n")
        took = wait(lambda: cb.get_object(Bucket="demo", Key="hello.txt"))
        body = cb.get_object(Bucket="demo", Key="hello.txt")["Body"].read()
        print(f"   GET at site b after {took * 1000:.0f} ms: {body!r}")

        step("tag it at site b, delete another key at site a")
        ca.put_object(Bucket="demo", Key="tmp.txt", Body=b"short-lived")
        wait(lambda: cb.head_object(Bucket="demo", Key="tmp.txt"))
        cb.put_object_tagging(Bucket="demo", Key="hello.txt",
                              Tagging={"TagSet": [{"Key": "reviewed", "Value": "yes"}]})
        ca.delete_object(Bucket="demo", Key="tmp.txt")
        wait(lambda: ca.get_object_tagging(Bucket="demo", Key="hello.txt")["TagSet"])
        print("   tags at site a:", ca.get_object_tagging(Bucket="demo",
                                                         Key="hello.txt")["TagSet"])
        wait(lambda: not cb.list_objects_v2(Bucket="demo", Prefix="tmp").get("Contents"))
        print("   tmp.txt is gone at site b too")

        step("concurrent writes to one key at both sites (a conflict)")
        ca.put_object(Bucket="demo", Key="race.txt", Body=b"written at a")
        cb.put_object(Bucket="demo", Key="race.txt", Body=b"written at b")
        d.wait_drained(30)
        time.sleep(0.3)
        va = ca.get_object(Bucket="demo", Key="race.txt")["Body"].read()
        vb = cb.get_object(Bucket="demo", Key="race.txt")["Body"].read()
        print(f"   site a has {va!r}, site b has {vb!r}  (the larger stamp wins everywhere)")
        for s in (a, b):
            out = subprocess.run([str(sites.bed.build_dir() / "s3tee"), "conflicts", "--redis",
                                  f"{s.redis.host}:{s.redis.port}"], capture_output=True, text=True)
            for line in out.stdout.splitlines():
                print(f"   conflict log at site {s.id}: {json.loads(line)}")
        if args.keep:
            input("\nsites are running; press Enter to stop them ")
    finally:
        step("stopping")
        d.stop()


if __name__ == "__main__":
    main()
