"""Fixtures of the s3tee integration tests (run by `make integration`, Debian's python).

Stores, Redis and proxies come from tests/bed/bed.py; the clients from lib/clients.py.

Session-scoped
    bed_tls         bed.TlsFiles: .ca (give to clients) .cert .key, names localhost,
                    *.localhost, s3.localhost, *.s3.localhost, 127.0.0.1 (not named `tls`:
                    a test parameter of that name would shadow it)
    store           bed.RgwSite, keys AKIDSTORE/secretstore; .url (http), .tls_url (https
                    with the bed CA), .access_key .secret .ca .admin(...)
    store_endpoint  clients.Endpoint of store (http)
    store_s3        in-process boto3 (1.26) client straight to the store
    moto            bed.Moto (http), skipped where moto_server is missing
    default_proxy   the shared bed.Proxy (use the `proxy` fixture)
Function-scoped
    proxy           the shared s3tee-proxy in front of store: client key AKIDCLIENT/
                    secretclient for all buckets; .url (http) .tls_url (https) .ca .pid
                    .access_log .error_log; restarted if a test killed it; a test during
                    which it died or printed a sanitizer report fails
    make_proxy      make_proxy(upstream=None, clients=None, store_key=None, tls=True,
                    env=None, binary=None, start=True, **directives) -> started bed.Proxy;
                    tls: True = https with the bed certificate, False = http only, or a
                    bed.TlsFiles; directives are config lines (virtual_host_domain=["a", "b"],
                    client_header_timeout="2s"; None drops a default); stopped after the
                    test, which fails on a sanitizer report or a bad exit
    make_redis      make_redis(**kw) -> started bed.Redis (AOF always, noeviction)
    redis           one make_redis()
    bucket          name of a fresh bucket made at the store (emptied and deleted after)
    make_bucket     make_bucket(hint=None, versioning=False, object_lock=False) -> name
    bucket_name     a unique name, not created; deleted after the test if it exists
    make_client     make_client(name, endpoint, **kw) -> a lib.clients wrapper; warns when
                    a substitute runs (no pyenv python here)
    payload_file    payload_file(size, name=None, seed=0) -> Path of deterministic bytes

Marker: @pytest.mark.timeout(seconds) (default $S3TEE_TEST_TIMEOUT or 300).
"""

import os
import signal
import sys
import time
import warnings
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bed"))
sys.path.insert(0, str(HERE))

import bed  # noqa: E402
from lib import clients, s3util  # noqa: E402
from lib.clients import Endpoint  # noqa: E402,F401  (re-exported for tests)

STORE_KEY = ("AKIDSTORE", "secretstore")
CLIENT_KEY = ("AKIDCLIENT", "secretclient")
_timings = {}


# ---------------------------------------------------------------------------------------
# pytest hooks

def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): fail the test after that long")
    config.addinivalue_line("markers", "bed_slow: slow test of the bed/clients only (no s3tee "
                            "build involved); .ci/run's sanitizer pass deselects these")
    # a SIGTERM (CI timeout, kill) unwinds like ^C: fixtures finalize, the bed stops
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def on_term(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")
        signal.signal(signal.SIGTERM, on_term)


def pytest_report_header(config):
    lines = [f"s3tee build: {bed.build_dir()}"]
    for name, desc in clients.inventory().items():
        lines.append(f"  {name:13} {desc}")
    lines.append(f"  {'moto_server':13} {bed.moto_command() or 'MISSING: moto tests skip'}")
    return lines


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    # which client ran as what (pytest -q prints no header)
    for name, desc in clients.inventory().items():
        tr.write_line(f"client {name:19} {desc}")
    if _timings:
        tr.write_line("bed: " + ", ".join(f"{k} {v:.1f}s" for k, v in _timings.items()))
    for note in clients.FALLBACKS:
        tr.write_line(f"bed: SUBSTITUTE CLIENT USED: {note}", yellow=True, bold=True)


# ---------------------------------------------------------------------------------------
# per-test timeout

class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _test_timeout(request):
    m = request.node.get_closest_marker("timeout")
    seconds = int(m.args[0]) if m else int(os.environ.get("S3TEE_TEST_TIMEOUT", "300"))

    def on_alarm(signum, frame):
        raise TestTimeout(f"test took longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------------------
# stores, redis

@pytest.fixture(scope="session")
def bed_tls():
    return bed.tls_files()


@pytest.fixture(scope="session")
def store(bed_tls):
    site = bed.RgwSite(*STORE_KEY, tls=bed_tls)
    try:
        site.start()
    except bed.Unavailable as e:
        pytest.fail(f"no RGW store: {e} (deploy/install-deps.sh installs it)")
    _timings["rgw start"] = site.start_seconds
    yield site
    site.stop()


@pytest.fixture(scope="session")
def store_endpoint(store):
    return Endpoint.of(store)


@pytest.fixture(scope="session")
def store_s3(store):
    return clients.boto3_client(Endpoint.of(store))


@pytest.fixture(scope="session")
def moto():
    m = bed.Moto()
    try:
        t0 = time.monotonic()
        m.start()
        _timings["moto start"] = time.monotonic() - t0
    except bed.Unavailable as e:
        pytest.skip(str(e))
    yield m
    m.stop()


@pytest.fixture
def make_redis():
    started = []

    def make(**kw):
        r = bed.Redis(**kw).start()
        started.append(r)
        return r

    yield make
    for r in reversed(started):
        r.close()


@pytest.fixture
def redis(make_redis):
    return make_redis()


# ---------------------------------------------------------------------------------------
# proxies

def _proxy_for(store, tls, upstream=None, clients_=None, store_key=None, tls_files=True,
               env=None, binary=None, directives=None):
    return bed.Proxy(upstream or store.url,
                     store_key=store_key or (store.access_key, store.secret),
                     clients=clients_ or [(*CLIENT_KEY, "*")],
                     tls=tls if tls_files is True else tls_files,
                     directives=directives, env=env, binary=binary)


@pytest.fixture
def make_proxy(store, bed_tls):
    started = []

    def make(upstream=None, clients=None, store_key=None, tls=True, env=None, binary=None,
             start=True, **directives):
        p = _proxy_for(store, bed_tls, upstream, clients, store_key, tls, env, binary,
                       directives)
        started.append(p)
        return p.start() if start else p

    yield make
    errors = []
    for p in reversed(started):
        try:
            p.close(check=True)
        except bed.BedError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


class _SharedProxy:
    def __init__(self, store, tls):
        self.store, self.tls = store, tls
        self.proxy = None

    def get(self):
        if self.proxy is None or not self.proxy.is_alive():
            if self.proxy is not None:   # it died in an earlier test, which failed for it
                self.proxy.close(check=False)
            self.proxy = _proxy_for(self.store, self.tls).start()
        return self.proxy


@pytest.fixture(scope="session")
def default_proxy(store, bed_tls):
    shared = _SharedProxy(store, bed_tls)
    yield shared
    if shared.proxy is not None:
        shared.proxy.close(check=True)


@pytest.fixture
def proxy(default_proxy):
    p = default_proxy.get()
    yield p
    problems = p.sanitizer_reports()
    if not p.is_alive():
        problems.insert(0, f"the shared proxy died during this test (status "
                           f"{p.proc.returncode if p.proc else p.returncode})\n"
                           + bed.tail(p.stderr_path, 40) + "\n" + bed.tail(p.error_log, 20))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


# ---------------------------------------------------------------------------------------
# buckets, clients, payloads

@pytest.fixture
def make_bucket(store_s3, request):
    made = []

    def make(hint=None, versioning=False, object_lock=False):
        name = s3util.unique_bucket_name(hint or request.node.name)
        kw = {"ObjectLockEnabledForBucket": True} if object_lock else {}
        store_s3.create_bucket(Bucket=name, **kw)
        made.append(name)
        if versioning and not object_lock:
            store_s3.put_bucket_versioning(Bucket=name,
                                           VersioningConfiguration={"Status": "Enabled"})
        return name

    yield make
    for name in made:
        left = s3util.delete_bucket(store_s3, name)
        if left:
            warnings.warn(left)


@pytest.fixture
def bucket(make_bucket):
    return make_bucket()


@pytest.fixture
def bucket_name(store_s3, request):
    name = s3util.unique_bucket_name(request.node.name)
    yield name
    left = s3util.delete_bucket(store_s3, name)
    if left:
        warnings.warn(left)


@pytest.fixture
def make_client():
    def make(name, endpoint, **kw):
        c = clients.make_client(name, endpoint, **kw)
        if c.substitute:
            warnings.warn(f"{name}: running {c.substitute}")
        return c
    return make


@pytest.fixture
def payload_file(tmp_path):
    def make(size, name=None, seed=0):
        path = tmp_path / (name or f"payload-{size}-{seed}")
        return Path(s3util.write_payload(path, size, seed))
    return make
