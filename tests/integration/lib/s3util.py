"""s3util.py - small S3 helpers for the tests: unique names, emptying buckets, payloads."""

import hashlib
import os
import re
import time
import uuid


def unique_bucket_name(hint="t"):
    """A valid, unique bucket name (3-63 chars, lower case) that starts with `hint`."""
    hint = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:40] or "t"
    return f"{hint}-{uuid.uuid4().hex[:12]}"


def payload(size, seed=0):
    """`size` deterministic pseudo-random bytes (fast: repeated SHA-256 blocks)."""
    block = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(2048))
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


def write_payload(path, size, seed=0):
    with open(path, "wb") as f:
        f.write(payload(size, seed))
    return path


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def empty_bucket(s3, bucket):
    """Deletes every object version, delete marker and multipart upload in `bucket`
    (legal holds lifted, governance retention bypassed). Returns the keys that could not
    be deleted (compliance-locked versions), as (key, version_id, error)."""
    left = []
    paginator = s3.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=bucket):
        for u in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            key, vid = v["Key"], v.get("VersionId")
            kw = {"VersionId": vid} if vid and vid != "null" else {}
            try:
                s3.delete_object(Bucket=bucket, Key=key, BypassGovernanceRetention=True, **kw)
            except Exception as e:
                try:  # a legal hold refuses the delete: lift it and try once more
                    s3.put_object_legal_hold(Bucket=bucket, Key=key, LegalHold={"Status": "OFF"}, **kw)
                    s3.delete_object(Bucket=bucket, Key=key, BypassGovernanceRetention=True, **kw)
                except Exception:
                    left.append((key, vid, str(e)))
    # an unversioned listing too (list_object_versions covers it on RGW; this is cheap)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            try:
                s3.delete_object(Bucket=bucket, Key=o["Key"])
            except Exception as e:
                left.append((o["Key"], None, str(e)))
    return left


def delete_bucket(s3, bucket, attempts=3):
    """empty_bucket + DeleteBucket. Returns None, or a string saying what was left."""
    from botocore.exceptions import ClientError
    for i in range(attempts):
        try:
            left = empty_bucket(s3, bucket)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "NoSuchBucket":
                return None
            raise
        if left:
            return f"bucket {bucket}: could not delete {len(left)} object version(s): {left[:3]}"
        try:
            s3.delete_bucket(Bucket=bucket)
            return None
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code == "NoSuchBucket":
                return None
            if code != "BucketNotEmpty" or i == attempts - 1:
                return f"bucket {bucket}: DeleteBucket: {code}"
            time.sleep(0.2)
    return None


def bucket_exists(s3, bucket):
    from botocore.exceptions import ClientError
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except ClientError:
        return False


def scratch_file(tmp_path, name, data):
    p = os.path.join(str(tmp_path), name)
    with open(p, "wb") as f:
        f.write(data)
    return p
