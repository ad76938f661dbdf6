"""bigstore.py - an RGW site of its own for tests that write hundreds of MiB or more.

The shared store keeps objects in RAM (memstore, 2 GiB), and RGW frees the tails of
deleted objects only through its garbage collector, two hours later by default. Forcing
the collector (`radosgw-admin gc process --include-all`) after each 200 MiB test was
followed once (of several runs; not reproduced since) by the memstore OSD going into
"full status failsafe" ("now -2147483648% full"), after which every write hung and the
tests after it failed one 60 s timeout at a time. So large tests write to a site of their
own, sized for what they write (memstore takes RAM only as objects are written), do not
force the collector, and stop the site when done, which frees it all.

    site = start(3 * GIB)          # bed.RgwSite with its own keys, tls like the shared one
    ...
    site.stop()
"""

import os

import bed

GIB = 1024 ** 3
KEY = ("AKIDBIG", "secretbig")
_ENV = "OSD_BYTES"


def start(osd_bytes, tls=True, key=KEY):
    """A started bed.RgwSite whose memstore holds `osd_bytes` (rgw-up.sh's OSD_BYTES)."""
    old = os.environ.get(_ENV)
    os.environ[_ENV] = str(int(osd_bytes))
    try:
        return bed.RgwSite(*key, tls=bed.tls_files() if tls is True else tls).start()
    finally:
        if old is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = old


def empty_and_delete(s3, bucket):
    """Objects, unfinished uploads, then the bucket (no garbage collection forced)."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=o["Key"])
    for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    s3.delete_bucket(Bucket=bucket)
