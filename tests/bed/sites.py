"""Multi-site deployments for tests, benchmarks and the demo (Debian python, stdlib only).

A Deployment of N sites starts, per site, an RGW store, a Redis (AOF, noeviction), an
s3tee-proxy and an s3tee-replicator (on loopback, or in a network namespace per site: see
below), wired as a full mesh: every site lists every site, and each pair of sites shares a
site key in each direction (`site`/`peer` lines).

    d = Deployment(["a", "b"]).start()
    d["a"].proxy.url, d["b"].redis, d["a"].store ...
    d.stop()

Where each site runs: Deployment(netns=None), the default, puts every site in its own
network namespace when bed.netns_available() says namespaces can be made here (root, and
`ip netns` and veth pairs work), and on loopback otherwise; the environment variable
S3TEE_BED_NETNS=0 keeps every default Deployment on loopback, S3TEE_BED_NETNS=1 insists on
namespaces (bed.Unavailable where they cannot be made). netns=True / netns=False chosen in
the code win over both.

Deployment(netns=True) (root only, else bed.Unavailable): each site runs in its own network
namespace (bed.Netns: `s3tee-<run id>-<site>-<k>`, a veth pair on a private /30, `lo` up, no
route beyond the /30). Its RGW daemons, Redis, proxy and replicator run inside it and bind
the namespace's address (site.netns.host), which the test process reaches over the veth.
The sites meet only through WAN relays (implied) in the root namespace: the relay for
a->b listens on the root side of a's veth and connects to b's address, so a partition of
the relay really cuts a from b. stop() deletes the namespaces and veths.
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
                 env=None, build=None, netns=None):
        self.netns = netns
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
        d = {"site_id": self.site_id, "redis": f"{self.redis.host}:{self.redis.port}",
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
                              name="s3tee-replicator", netns=self.netns)
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
    """One site: store + Redis + proxy + replicator (+ its bed.Netns in netns mode)."""

    def __init__(self, site_id, store, redis, proxy, replicator, netns=None):
        self.netns = netns
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
    peer_plain_http yes. Clients keep .proxy.url (http) either way; .proxy.tls_url too.
    netns=True: every site in its own network namespace, linked through relays (see the
    module's docstring); the certificate then also names the namespaces' addresses.
    netns=None (default): namespaces where they work, else loopback (bed.netns_default():
    S3TEE_BED_NETNS=0/1 decides). .netns_wanted says which was chosen."""

    def __init__(self, ids=("a", "b"), proxy_directives=None, replicator_directives=None,
                 proxy_env=None, start_replicators=True, tls=True, wan=False, clock_offset=None,
                 netns=None):
        self.netns_wanted = bed.netns_default() if netns is None else bool(netns)
        self.wan_wanted = wan or self.netns_wanted   # namespaces meet only through relays
        self.wan = None                          # wan.Wan once started with wan=True
        self.clock_offset = dict(clock_offset or {})   # site id -> ms (proxy and replicator)
        self.ids = list(ids)
        self.proxy_directives = dict(proxy_directives or {})
        self.replicator_directives = dict(replicator_directives or {})
        self.proxy_env = dict(proxy_env or {})   # site id -> env dict
        self.start_replicators = start_replicators
        self.tls = tls
        self.tls_files = None                    # bed.TlsFiles once started with tls
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
                if self.wan is not None and self.netns_wanted:
                    src, dst = self.sites[frm].netns, self.sites[to].netns
                    r = self.wan.add(frm, to, ports[to], host=src.gateway, target_host=dst.host)
                    out[(frm, to)] = f"{scheme}://{src.gateway}:{r.port}"
                elif self.wan is not None:
                    out[(frm, to)] = f"{scheme}://127.0.0.1:{self.wan.add(frm, to, ports[to]).port}"
                else:
                    out[(frm, to)] = f"{scheme}://127.0.0.1:{ports[to]}"
        return out

    def _start_netns(self):
        """One namespace per site (before anything runs in them)."""
        why = bed.netns_available()
        if why:
            raise bed.Unavailable(why)
        for i in self.ids:
            self.sites[i] = Site(i, None, None, None, None, bed.Netns(i))
            self.sites[i].netns.start()

    def _start(self):
        nets = {i: None for i in self.ids}
        if self.netns_wanted:
            self._start_netns()
            nets = {i: self.sites[i].netns for i in self.ids}
        stores = {i: bed.RgwSite(access_key=f"AKSTORE{i.upper()}", secret=f"secretstore{i}",
                                 netns=nets[i])
                  for i in self.ids}
        for i, st in stores.items():
            self.sites[i] = Site(i, st, None, None, None, nets[i])  # so stop() finds what started
        bed.RgwSite.start_many(list(stores.values()))
        redises = {}
        for i in self.ids:
            redises[i] = self.sites[i].redis = bed.Redis(netns=nets[i]).start()
        ports = {i: bed.free_port() for i in self.ids}
        tls = None
        if self.tls and self.netns_wanted:   # peers are reached at relay addresses
            extra = [a for n in nets.values() for a in (n.host, n.gateway)]
            tls = bed.tls_files(bed.DEFAULT_TLS_NAMES + tuple(extra))
        elif self.tls:
            tls = bed.tls_files()
        self.tls_files = tls
        tls_ports = {i: bed.free_port() if tls else None for i in self.ids}
        links = self._link_urls(tls_ports if tls else ports, "https" if tls else "http")
        hosts = {i: nets[i].host if nets[i] else "127.0.0.1" for i in self.ids}
        urls = {i: f"https://{hosts[i]}:{tls_ports[i]}" if tls else f"http://{hosts[i]}:{ports[i]}"
                for i in self.ids}
        link = {"peer_ca_file": tls.ca} if tls else {"peer_plain_http": "yes"}
        for i in self.ids:
            others = [p for p in self.ids if p != i]
            # a site in a namespace reaches the others (bucket operations) only by relay
            site_lines = [f"{p} {links[(i, p)] if self.netns_wanted and p != i else urls[p]}"
                          for p in self.ids]
            creds = [f"site {p} {_site_key(p, i)[0]} {_site_key(p, i)[1]}" for p in others]
            creds += [f"peer {p} {_site_key(i, p)[0]} {_site_key(i, p)[1]}" for p in others]
            d = {"site_id": i, "site": site_lines, "redis": f"{hosts[i]}:{redises[i].port}"}
            if tls:
                d["site_ca_file"] = tls.ca   # bucket-level operations reach the other sites
            else:
                d["site_plain_http"] = "yes"
            d.update(self.proxy_directives)
            proxy = bed.Proxy(stores[i].url, store_key=(stores[i].access_key, stores[i].secret),
                              tls=tls or False, directives=d, extra_creds=creds,
                              env=self._clock_env(i, self.proxy_env.get(i)), netns=nets[i])
            proxy.port, proxy.tls_port = ports[i], tls_ports[i]
            self.sites[i].proxy = proxy
            proxy.start()
            repl = Replicator(i, redises[i], stores[i].url,
                              (stores[i].access_key, stores[i].secret),
                              {p: links[(i, p)] for p in others},
                              {p: _site_key(i, p) for p in others},
                              directives={**link, **self.replicator_directives},
                              env=self._clock_env(i), netns=nets[i])
            self.sites[i].replicator = repl
            if self.start_replicators:
                repl.start()
            self.sites[i] = Site(i, stores[i], redises[i], proxy, repl, nets[i])
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
            bed.RgwSite.stop_many([s.store for s in self.sites.values() if s.store is not None])
        except Exception as e:
            errors.append(e)
        for s in self.sites.values():      # last: every process inside has stopped
            if s.netns is not None:
                try:
                    s.netns.stop()
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
