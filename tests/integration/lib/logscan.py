"""logscan.py - reading the proxies' logs: access-log JSON lines, and a sweep of every log,
metrics file and tool output the bed's proxies, replicators and s3tee tool runs wrote, for
secrets and request signatures that must never appear there.

    rec = wait_access(proxy, lambda e: e["key"] == "k" and e["method"] == "PUT")
    r = run_tool("dead", "--redis", f"127.0.0.1:{port}")   # output kept for the sweep
    leaks = find_leaks()        # [] when nothing swept holds a secret or signature
"""

import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import bed
from lib import awsv4

SIG_RE = re.compile(rb"(?i)(?:signature=|chunk-signature=|x-amz-signature=)\s*[0-9a-f]{64}")


def access_entries(proxy):
    """Every complete JSON line of PROXY's access log, parsed (a broken line fails the
    caller). The last line is skipped while it has no newline: Linux lets a reader see a
    write(2) to a regular file half done, so the proxy may still be writing it."""
    try:
        text = Path(proxy.access_log).read_text()
    except FileNotFoundError:
        return []
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_access(proxy, pred, timeout=5.0):
    """The first access-log entry of PROXY matching PRED, waiting up to TIMEOUT for it."""
    deadline = time.monotonic() + timeout
    while True:
        for e in access_entries(proxy):
            if pred(e):
                return e
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching access-log line in {proxy.access_log}:\n"
                                 + bed.tail(proxy.access_log, 10))
        time.sleep(0.05)


def wait_log(path, needle, timeout=5.0, start=0):
    """Waits until file PATH (from byte START on) contains NEEDLE; returns its offset."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = Path(path).read_bytes()[start:]
        except FileNotFoundError:
            data = b""
        i = data.find(needle.encode() if isinstance(needle, str) else needle)
        if i >= 0:
            return start + i
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in {path} after {timeout}s\n" + bed.tail(path))
        time.sleep(0.05)


def proxy_dirs():
    """Directories of every bed.Proxy this process started (they outlive the proxies)."""
    return sorted(d for d in bed.run_root().glob("proxy-*") if d.is_dir())


def bed_dirs():
    """Directories of every proxy, replicator (tests/bed/sites.py) and run_tool() call of
    this process: what find_leaks() sweeps by default."""
    root = bed.run_root()
    return sorted(d for kind in ("proxy", "replicator", "tool")
                  for d in root.glob(f"{kind}-*") if d.is_dir())


def run_tool(*args, timeout=30):
    """Runs the s3tee operator tool with ARGS; its stdout and stderr are kept in a tool-*
    directory of the run for the sweep. Returns the CompletedProcess (text)."""
    d = Path(tempfile.mkdtemp(prefix="tool-", dir=bed.run_root()))
    r = subprocess.run([str(bed.build_dir() / "s3tee"), *map(str, args)], capture_output=True,
                       text=True, timeout=timeout)
    (d / "argv").write_text(" ".join(map(str, args)) + "\n")
    (d / "stdout.log").write_text(r.stdout)
    (d / "stderr.log").write_text(r.stderr)
    return r


def secrets_in(directory):
    """The secrets of a proxy's or replicator's credentials file (client, store, site,
    peer)."""
    out = set()
    try:
        lines = (Path(directory) / "credentials").read_text().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        w = line.split()
        if not w or w[0].startswith("#"):
            continue
        if w[0] in ("client", "store") and len(w) >= 3:
            out.add(w[2])
        elif w[0] in ("site", "peer") and len(w) >= 4:
            out.add(w[3])
    return out


LOG_NAMES = ("access.log", "error.log", "stderr.log", "stdout.log", "metrics.json")


def log_files(directory):
    """What a bed directory holds that an operator reads: logs, the replicator's metrics
    snapshot, tool output (not the credentials and configs the bed wrote)."""
    d = Path(directory)
    return [d / n for n in LOG_NAMES if (d / n).exists()]


def swept_files(dirs=None):
    """Every file find_leaks(dirs=DIRS) reads."""
    return [p for d in (bed_dirs() if dirs is None else dirs) for p in log_files(d)]


def find_leaks(extra_secrets=(), dirs=None):
    """Scans every log, metrics file and tool output of every bed dir (proxies,
    replicators, run_tool() calls) for any secret (of any credentials file there), any
    signature this process computed (awsv4.SENT_SIGNATURES) and anything shaped like
    'Signature=<64 hex>'. Returns a list of findings (file, what) - empty is good."""
    dirs = bed_dirs() if dirs is None else dirs
    secrets = set(extra_secrets)
    for d in dirs:
        secrets |= secrets_in(d)
    needles = [s.encode() for s in secrets if len(s) >= 6]
    sigs = [s.encode() for s in awsv4.SENT_SIGNATURES]
    findings = []
    for d in dirs:
        for path in log_files(d):
            data = path.read_bytes()
            for s in needles:
                if s in data:
                    findings.append((str(path), f"secret {s[:3].decode()}..."))
            for s in sigs:
                if s in data:
                    findings.append((str(path), f"request signature {s[:8].decode()}..."))
            m = SIG_RE.search(data)
            if m:
                findings.append((str(path), f"signature-shaped text {m.group(0)[:30]!r}"))
    return findings
