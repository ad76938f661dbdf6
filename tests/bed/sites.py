"""Multi-site deployments for tests, benchmarks and the demo (Debian python, stdlib only).

A Deployment of N sites starts, per site, an RGW store, a Redis (AOF, noeviction), an
s3tee-proxy and an s3tee-replicator, all on loopback, wired as a full mesh: every site lists
every site, and each pair of sites shares a site key in each direction (`site`/`peer` lines).

    d = Deployment(["a", "b"]).start()
    d["a"].proxy.url, d["b"].redis, d["a"].store ...
    d.stop()
"""
import os
import signal
import time
from pathlib import Path

import bed
import wan


class Replicator:
    """An s3tee-replicator with a generated config and 0600 credentials file."""

    def __init__(self, site_id, redis, upstream, store_key, peers, peer_keys, directives=None,
                 env=None, build=None):
        self.site_id = site_id
        self.redis = redis
        self.upstream = upstream
        self.store_key = tuple(store_key)
        self.peers = dict(peers)            # site id -> proxy URL
        self.peer_keys = dict(peer_keys)    # site id -> (access key, secret) to sign with there
        self.directives = dict(directives or {})
        self.extra_env = dict(env or {})
        self.binary = (Path(build) if build else bed.build_dir()) / "s3tee-replicator"
        self.dir = bed._new_dir("replicator")
        self.conf_path = self.dir / "replicator.conf"
        self.creds_path = self.dir / "credentials"
        self.error_log = self.dir / "error.log"
        self.metrics_path = self.dir / "metrics.json"
        self.stderr_path = self.dir / "stderr.log"
        self.stdout_path = self.dir / "stdout.log"
        self.proc = None
        self.returncode = None

    def config_text(self):
        d = {"site_id": self.site_id, "redis": f"127.0.0.1:{self.redis.port}",
             "upstream": self.upstream, "credentials_file": self.creds_path,
             "error_log": self.error_log, "log_level": "debug", "metrics_file": self.metrics_path,
             "retry_base": "100ms", "retry_max": "2s", "claim_idle": "5s"}
        d.update(self.directives)
        lines = ["# written by tests/bed/sites.py"]
        for name, value in d.items():
            for v in (value if isinstance(value, (list, tuple)) else [value]):
                if v is not None:
                    lines.append(f"{name} {v}")
        for site, url in self.peers.items():
            lines.append(f"peer {site} {url}")
        return "\n".join(lines) + "\n"

    def write_files(self):
        self.conf_path.write_text(self.config_text())
        lines = [f"store {self.store_key[0]} {self.store_key[1]}"]
        lines += [f"peer {s} {ak} {sk}" for s, (ak, sk) in self.peer_keys.items()]
        fd = os.open(self.creds_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.creds_path, 0o600)

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise bed.BedError(f"{self.binary} is not built: run `make`")
        self.write_files()
        env = dict(os.environ)
        for k, v in bed.SANITIZER_ENV.items():
            env.setdefault(k, v)
        env.update(self.extra_env)
        self.returncode = None
        self.proc = bed.spawn([self.binary, "-c", self.conf_path], self.dir, env=env,
                              name="s3tee-replicator")
        bed._register(self)
        time.sleep(0.2)
        if self.proc.poll() is not None:
            raise bed.BedError(f"s3tee-replicator exited at start ({self.proc.returncode}): "
                               f"{bed.tail(self.stderr_path)} {bed.tail(self.error_log)}")
        return self

    def is_alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.returncode = None

    def restart(self, kill=True):
        """kill -9 (kill=False: SIGTERM) and start again with the same files."""
        if kill:
            self.kill9()
        elif self.proc is not None:
            bed.terminate(self.proc, 15.0)
        self.proc = None
        return self.start()

    def stop(self, check=True, timeout=15.0):
        if self.proc is None:
            return
        self.returncode = bed.terminate(self.proc, timeout)
        self.proc = None
        bed._unregister(self)
        if check:
            self.check_logs()

    def check_logs(self):
        for path in (self.stderr_path, self.error_log):
            try:
                text = Path(path).read_text(errors="replace")
            except FileNotFoundError:
                continue
            for marker in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
                if marker in text:
                    raise bed.SanitizerError(f"{path}: {marker}\n{bed.tail(path, 40)}")

    close = stop


class Site:
    """One site: store + Redis + proxy + replicator."""

    def __init__(self, site_id, store, redis, proxy, replicator):
        self.id = site_id
        self.store = store
        self.redis = redis
        self.proxy = proxy
        self.replicator = replicator

    def __repr__(self):
        return f"Site({self.id}, proxy={self.proxy.url})"


def _site_key(frm, to):
    """Key site FRM signs with at site TO (TO lists it as `site FRM`)."""
    return (f"AKSITE{frm.upper()}TO{to.upper()}", f"secret-{frm}-to-{to}")


class Deployment:
    """N sites wired as a full mesh. proxy_directives / replicator_directives apply to all
    sites; per_site maps a site id to extra proxy directives (e.g. a clock offset env).
    tls=True (default): replicators write to the peers' proxies over https, verified with
    the bed CA (peer_ca_file; certificate for IP 127.0.0.1); tls=False: plain http with
    peer_plain_http yes. Clients keep .proxy.url (http) either way; .proxy.tls_url too."""

    def __init__(self, ids=("a", "b"), proxy_directives=None, replicator_directives=None,
                 proxy_env=None, start_replicators=True, tls=True, wan=False, clock_offset=None):
        self.wan_wanted = wan
        self.wan = None                          # wan.Wan once started with wan=True
        self.clock_offset = dict(clock_offset or {})   # site id -> ms (proxy and replicator)
        self.ids = list(ids)
        self.proxy_directives = dict(proxy_directives or {})
        self.replicator_directives = dict(replicator_directives or {})
        self.proxy_env = dict(proxy_env or {})   # site id -> env dict
        self.start_replicators = start_replicators
        self.tls = tls
        self.sites = {}

    def __getitem__(self, site_id):
        return self.sites[site_id]

    def start(self):
        """Starts every site; on a failure stops what it started and raises."""
        try:
            return self._start()
        except BaseException:
            try:
                self.stop()
            except Exception as e:
                bed.log(f"stopping a deployment that failed to start: {e}")
            raise

    def _clock_env(self, site_id, env=None):
        env = dict(env or {})
        if site_id in self.clock_offset:
            env["S3TEE_CLOCK_OFFSET_MS"] = str(self.clock_offset[site_id])
        return env

    def _link_urls(self, ports, scheme="http"):
        """(frm, to) -> the URL site frm's replicator uses for site to's proxy: the proxy
        itself, or with wan=True a WAN relay in front of it (one per directed link; TLS
        passes through it, and the certificate names 127.0.0.1 either way)."""
        out = {}
        if self.wan_wanted:
            self.wan = wan.Wan()
            bed._register(self.wan)
        for frm in self.ids:
            for to in self.ids:
                if frm == to:
                    continue
                if self.wan is not None:
                    out[(frm, to)] = f"{scheme}://127.0.0.1:{self.wan.add(frm, to, ports[to]).port}"
                else:
                    out[(frm, to)] = f"{scheme}://127.0.0.1:{ports[to]}"
        return out

    def _start(self):
        stores = {i: bed.RgwSite(access_key=f"AKSTORE{i.upper()}", secret=f"secretstore{i}")
                  for i in self.ids}
        for i, st in stores.items():
            self.sites[i] = Site(i, st, None, None, None)    # so stop() finds what started
        bed.RgwSite.start_many(list(stores.values()))
        redises = {}
        for i in self.ids:
            redises[i] = self.sites[i].redis = bed.Redis().start()
        ports = {i: bed.free_port() for i in self.ids}
        tls = bed.tls_files() if self.tls else None
        tls_ports = {i: bed.free_port() if tls else None for i in self.ids}
        links = self._link_urls(tls_ports if tls else ports, "https" if tls else "http")
        urls = {i: f"https://127.0.0.1:{tls_ports[i]}" if tls else f"http://127.0.0.1:{ports[i]}"
                for i in self.ids}
        link = {"peer_ca_file": tls.ca} if tls else {"peer_plain_http": "yes"}
        site_lines = [f"{i} {urls[i]}" for i in self.ids]
        for i in self.ids:
            others = [p for p in self.ids if p != i]
            creds = [f"site {p} {_site_key(p, i)[0]} {_site_key(p, i)[1]}" for p in others]
            creds += [f"peer {p} {_site_key(i, p)[0]} {_site_key(i, p)[1]}" for p in others]
            d = {"site_id": i, "site": site_lines, "redis": f"127.0.0.1:{redises[i].port}"}
            if tls:
                d["site_ca_file"] = tls.ca   # bucket-level operations reach the other sites
            else:
                d["site_plain_http"] = "yes"
            d.update(self.proxy_directives)
            proxy = bed.Proxy(stores[i].url, store_key=(stores[i].access_key, stores[i].secret),
                              tls=tls or False, directives=d, extra_creds=creds,
                              env=self._clock_env(i, self.proxy_env.get(i)))
            proxy.port, proxy.tls_port = ports[i], tls_ports[i]
            self.sites[i].proxy = proxy
            proxy.start()
            repl = Replicator(i, redises[i], stores[i].url,
                              (stores[i].access_key, stores[i].secret),
                              {p: links[(i, p)] for p in others},
                              {p: _site_key(i, p) for p in others},
                              directives={**link, **self.replicator_directives},
                              env=self._clock_env(i))
            self.sites[i].replicator = repl
            if self.start_replicators:
                repl.start()
            self.sites[i] = Site(i, stores[i], redises[i], proxy, repl)
        return self

    def stop(self):
        errors = []
        for s in self.sites.values():
            for part in (s.replicator, s.proxy):
                if part is None:
                    continue
                try:
                    part.stop()
                except Exception as e:  # keep stopping the rest
                    errors.append(e)
            if s.redis is not None:
                s.redis.stop(check=False)
        if self.wan is not None:
            self.wan.stop()
            bed._unregister(self.wan)
        try:
            bed.RgwSite.stop_many([s.store for s in self.sites.values()])
        except Exception as e:
            errors.append(e)
        if errors:
            raise errors[0]

    def wait_drained(self, timeout=60.0):
        """Until every consumer group of every site has nothing pending or unread."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(self.backlog(i) == 0 for i in self.ids):
                return True
            time.sleep(0.1)
        return False

    def backlog(self, site_id):
        r = self.sites[site_id].redis
        try:
            groups = r.command("XINFO", "GROUPS", "s3tee:log")
        except Exception:
            return 0   # no stream yet: nothing written
        total = 0
        for g in groups:
            info = dict(zip(g[0::2], g[1::2]))
            total += int(info.get(b"pending", info.get("pending", 0)) or 0)
            lag = info.get(b"lag", info.get("lag"))
            total += int(lag) if lag not in (None, b"", "") else 0
        return total
