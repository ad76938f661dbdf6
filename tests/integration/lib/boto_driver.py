"""boto_driver.py JSON | -   runs boto3 S3 calls in whatever interpreter runs it, prints JSON.

Lets the tests (which run on Debian's python and its boto3 1.26) drive another boto3, e.g.
the pyenv one (1.43), in a subprocess. clients.Boto3 builds the command; by hand:

    python3 boto_driver.py '{"endpoint": "http://127.0.0.1:8000", "access_key": "AK",
        "secret": "SK", "calls": [{"op": "list_buckets", "params": {}}]}'

Command (JSON on argv[1], or on stdin with "-"):
    endpoint, access_key, secret, region ("us-east-1"), ca (CA file for https, or null)
    config     botocore.config.Config keyword arguments
    calls      [{"op": client method, "params": {...}}]; stops at the first error
    single     true: "value" is the one response instead of a list
    exec       Python source run with s3, boto3, botocore, config bound; `result` is returned
Values: {"$b64": ...} is bytes, {"$file": path} an open file (for Body / Fileobj), a
"TransferConfig" parameter given as a dict becomes boto3.s3.transfer.TransferConfig.

Output: {"meta": {python, boto3, botocore versions, ignored_config}, "value": ..., "error": null or
{"Code", "Message", "Status", "Type"}}; bytes come back as {"$b64"}, datetimes as
{"$datetime"}, streaming bodies are read. Exit status 0 on success, 1 if a call failed,
2 if the command could not run at all.
"""

import base64
import datetime
import json
import sys
import traceback


def decode(v, files):
    if isinstance(v, dict):
        if set(v) == {"$b64"}:
            return base64.b64decode(v["$b64"])
        if set(v) == {"$file"}:
            f = open(v["$file"], "rb")
            files.append(f)
            return f
        return {k: decode(x, files) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x, files) for x in v]
    return v


def encode(v):
    if isinstance(v, (bytes, bytearray)):
        return {"$b64": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, datetime.datetime):
        return {"$datetime": v.isoformat()}
    if isinstance(v, dict):
        return {str(k): encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [encode(x) for x in v]
    if hasattr(v, "read"):  # botocore StreamingBody
        return encode(v.read())
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def error_of(e):
    resp = getattr(e, "response", None)
    if isinstance(resp, dict) and "Error" in resp:
        err = resp.get("Error", {})
        meta = resp.get("ResponseMetadata", {})
        return {"Type": type(e).__name__, "Code": err.get("Code"), "Message": err.get("Message"),
                "Status": meta.get("HTTPStatusCode"), "Error": encode(err)}
    return {"Type": type(e).__name__, "Code": type(e).__name__, "Message": str(e), "Status": None}


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.loads(sys.stdin.read() if argv[1] == "-" else argv[1])
    import boto3
    import botocore
    import botocore.config
    from boto3.s3.transfer import TransferConfig

    meta = {"python": sys.executable, "python_version": sys.version.split()[0],
            "boto3": boto3.__version__, "botocore": botocore.__version__}
    # options newer than this botocore (request_checksum_calculation on 1.29) are dropped
    # and named in meta: that botocore behaves as if they were at their old default
    options = dict(spec.get("config", {}))
    known = getattr(botocore.config.Config, "OPTION_DEFAULTS", None)
    if known is not None:
        meta["ignored_config"] = sorted(k for k in options if k not in known)
        for k in meta["ignored_config"]:
            del options[k]
    config = botocore.config.Config(**options)
    s3 = boto3.session.Session().client(
        "s3", endpoint_url=spec["endpoint"], region_name=spec.get("region", "us-east-1"),
        aws_access_key_id=spec["access_key"], aws_secret_access_key=spec["secret"],
        verify=(spec.get("ca") or True) if spec["endpoint"].startswith("https:") else None,
        config=config)

    out = {"meta": meta, "value": None, "error": None}
    files = []
    try:
        if "exec" in spec:
            scope = {"s3": s3, "boto3": boto3, "botocore": botocore, "config": config,
                     "TransferConfig": TransferConfig, "result": None}
            exec(spec["exec"], scope)
            out["value"] = encode(scope.get("result"))
        else:
            values = []
            for c in spec.get("calls", []):
                params = decode(c.get("params", {}), files)
                if isinstance(params.get("TransferConfig"), dict):
                    params["Config"] = TransferConfig(**params.pop("TransferConfig"))
                values.append(encode(getattr(s3, c["op"])(**params)))
            out["value"] = values[0] if spec.get("single") and values else values
    except Exception as e:  # report any failure as data, the caller asserts on it
        out["error"] = error_of(e)
        out["error"]["Traceback"] = traceback.format_exc(limit=3, chain=False)
    finally:
        for f in files:
            f.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 1 if out["error"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
