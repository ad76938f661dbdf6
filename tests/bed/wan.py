"""wan.py - a userspace WAN between test sites (the kernel here has no netem).

One Relay per directed inter-site link: it listens on a loopback port and forwards every
connection to a target port, applying what the test sets at run time (host= and
target_host= for other addresses: in the bed's network namespace mode a relay listens on
the root side of the sending site's veth and connects to the receiving site's address):

    r = Relay(target_port, name="a->b").start()
    r.set(latency=0.040, jitter=0.005, bandwidth=12_500_000, stall_prob=0.01,
          stall=0.2, reset_prob=0.0)
    r.partition()      # existing connections freeze, new ones get no answer
    r.heal()           # frozen connections carry on, waiting ones are connected
    r.reset_all()      # every open connection gets a TCP RST (both sides)
    r.stop()

What each knob emulates:
  latency, jitter   one-way delay of every chunk (uniform +-jitter, order kept)
  bandwidth         bytes per second per direction of each connection (None: no cap)
  stall_prob/stall  a chunk that waits `stall` seconds more: a lost packet whose TCP
                    retransmit arrives late (the connection survives)
  reset_prob        a chunk whose arrival resets the connection: connection loss
  partition         a link that carries nothing: bytes in flight wait, a new connection is
                    accepted by the kernel but nothing answers (as if the SYN were lost and
                    retried), so the peer's own timeouts decide. cut=True resets the open
                    connections instead of freezing them.

Memory is bounded: each direction of a connection holds at most QUEUE_BYTES in flight; past
that the relay stops reading and TCP flow control pushes back on the sender.

Stdlib only (Debian's /usr/bin/python3), threads: 2 per open connection and direction.
"""

import random
import select
import socket
import struct
import sys
import threading
import time

CHUNK = 64 * 1024          # bytes read at once
QUEUE_BYTES = 1024 * 1024  # bytes in flight per direction of a connection
BURST_S = 0.010            # bandwidth credit a late-waking writer may make up, in seconds


def _log(msg):
    print(f"wan: {msg}", file=sys.stderr, flush=True)


def _hard_close(sock):
    """Closes with SO_LINGER 0: the peer gets RST, not FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _sleep_until(t):
    """Sleeps until monotonic time t; reads the clock once (a check and a sleep that read it
    apart can ask for a negative sleep, which kills the pipe's thread)."""
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


def _recv(conn, sock):
    """Up to CHUNK bytes; b"" at EOF; None on an error or once conn is closed. Waits in
    select() with a timeout, never in recv(): a thread blocked in recv() would keep a closed
    socket alive (and its RST unsent)."""
    while not conn.closed:
        try:
            ready, _, _ = select.select([sock], [], [], 0.5)
            if ready:
                return sock.recv(CHUNK)
        except BlockingIOError:
            continue
        except (OSError, ValueError):
            return None
    return None


def _send_all(conn, sock, data):
    view = memoryview(data)
    while view and not conn.closed:
        try:
            _, ready, _ = select.select([], [sock], [], 0.5)
            if ready:
                view = view[sock.send(view):]
        except BlockingIOError:
            continue
        except (OSError, ValueError):
            return False
    return not view


class _Pipe:
    """One direction of a connection: a reader thread queues (due time, bytes), a writer
    thread sends each chunk when it is due, at the link's bandwidth."""

    def __init__(self, conn, src, dst, label):
        self.conn, self.src, self.dst, self.label = conn, src, dst, label
        self.items = []                   # [(due monotonic, bytes or None for EOF)]
        self.queued = 0                   # bytes in self.items
        self.cv = threading.Condition()
        self.last_due = 0.0

    def start(self):
        for fn in (self._read, self._write):
            threading.Thread(target=fn, daemon=True, name=f"wan {self.label}").start()

    def _read(self):
        relay = self.conn.relay
        while not self.conn.closed:
            relay.wait_open(self.conn)
            data = _recv(self.conn, self.src)
            if data is None:           # reset by either side, or by us
                self.conn.reset()
                return
            if self.conn.closed:
                return
            p = relay.params
            due = time.monotonic() + max(0.0, p["latency"] + random.uniform(-p["jitter"], p["jitter"]))
            due = max(due, self.last_due)          # a TCP stream keeps its order
            if data and p["stall_prob"] and random.random() < p["stall_prob"]:
                due += p["stall"]
                relay.count("stalls")
            self.last_due = due
            with self.cv:
                while data and self.queued >= QUEUE_BYTES and not self.conn.closed:
                    self.cv.wait(0.5)
                self.items.append((due, data or None))
                self.queued += len(data)
                self.cv.notify_all()
            if not data:
                return

    def _write(self):
        relay = self.conn.relay
        sent_at = time.monotonic()       # bandwidth: when the last chunk has left
        while True:
            with self.cv:
                while not self.items and not self.conn.closed:
                    self.cv.wait(0.5)
                if self.conn.closed:
                    return
                due, data = self.items[0]
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            relay.wait_open(self.conn)
            if self.conn.closed:
                return
            with self.cv:
                self.items.pop(0)
                self.queued -= len(data or b"")
                self.cv.notify_all()
            if data is None:
                try:
                    self.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self.conn.half_done()
                return
            p = relay.params
            if p["reset_prob"] and random.random() < p["reset_prob"]:
                relay.count("resets")
                self.conn.reset()
                return
            bw = p["bandwidth"]
            if bw:
                # a token bucket holding BURST_S of credit: a sleep that ends late (a busy
                # machine) is made up by the next chunks, else every oversleep is lost and
                # the link carries well under its cap; never more than BURST_S above it
                start = max(time.monotonic() - BURST_S, sent_at)
                sent_at = start + len(data) / bw
                _sleep_until(start)
            if not _send_all(self.conn, self.dst, data):
                self.conn.reset()
                return
            relay.count("bytes", len(data))
            if bw:
                _sleep_until(sent_at)


class _Conn:
    def __init__(self, relay, client):
        self.relay = relay
        self.client = client
        self.server = None
        self.closed = False
        self.halves = 0
        self.lock = threading.Lock()

    def run(self):
        """Connects to the target once the link is open, then starts both pipes."""
        self.relay.wait_open(self)
        if self.closed:
            return
        try:
            self.server = socket.create_connection((self.relay.target_host, self.relay.target_port),
                                                   timeout=10)
            self.server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.server.setblocking(False)
        except OSError:
            self.reset()
            return
        self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.setblocking(False)
        _Pipe(self, self.client, self.server, f"{self.relay.name} up").start()
        _Pipe(self, self.server, self.client, f"{self.relay.name} down").start()

    def half_done(self):
        with self.lock:
            self.halves += 1
            done = self.halves == 2
        if done:
            self.close()

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.server):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self.relay.forget(self)

    def reset(self):
        """Both sides see a connection reset."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.server):
            if s is not None:
                _hard_close(s)
        self.relay.forget(self)


class Relay:
    """A directed link: listens on host:port (0: a free one) and forwards to
    target_host:target_port with the impairments set by set()."""

    DEFAULTS = dict(latency=0.0, jitter=0.0, bandwidth=None, stall_prob=0.0, stall=0.2,
                    reset_prob=0.0)

    def __init__(self, target_port, port=0, name="link", host="127.0.0.1",
                 target_host="127.0.0.1"):
        self.host, self.target_host = host, target_host
        self.target_port = target_port
        self.name = name
        self.params = dict(self.DEFAULTS)
        self.port = port
        self.sock = None
        self.conns = set()
        self.lock = threading.Lock()
        self.open = threading.Event()
        self.open.set()
        self.stopped = False
        self.counters = {"conns": 0, "bytes": 0, "stalls": 0, "resets": 0}

    def __repr__(self):
        return f"Relay({self.name} {self.host}:{self.port} -> {self.target_host}:{self.target_port})"

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, self.port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name=f"wan {self.name}").start()
        return self

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.stopped:
                _hard_close(client)
                return
            conn = _Conn(self, client)
            with self.lock:
                self.conns.add(conn)
                self.counters["conns"] += 1
            threading.Thread(target=conn.run, daemon=True, name=f"wan {self.name} conn").start()

    # -- run-time control

    def set(self, **params):
        """Changes impairments (keys of DEFAULTS); the others keep their values."""
        for k, v in params.items():
            if k not in self.DEFAULTS:
                raise KeyError(f"unknown WAN parameter {k}")
            self.params[k] = v
        return self

    def clear(self):
        """No impairments (a partition stays as it is)."""
        self.params = dict(self.DEFAULTS)
        return self

    def partition(self, cut=False):
        self.open.clear()
        if cut:
            self.reset_all()
        return self

    def heal(self):
        self.open.set()
        return self

    @property
    def partitioned(self):
        return not self.open.is_set()

    def reset_all(self):
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.reset()
        self.count("resets", len(conns))
        return len(conns)

    def wait_open(self, conn):
        while not self.open.wait(0.5):
            if conn.closed or self.stopped:
                return

    def forget(self, conn):
        with self.lock:
            self.conns.discard(conn)

    def count(self, name, n=1):
        with self.lock:
            self.counters[name] += n

    def stop(self, check=False):
        self.stopped = True
        self.open.set()
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.close()
        return self

    close = stop


class Wan:
    """The relays of a deployment, one per directed link (frm, to)."""

    def __init__(self):
        self.links = {}

    def add(self, frm, to, target_port, host="127.0.0.1", target_host="127.0.0.1"):
        r = Relay(target_port, name=f"{frm}->{to}", host=host, target_host=target_host).start()
        self.links[(frm, to)] = r
        return r

    def __getitem__(self, pair):
        return self.links[pair]

    def _select(self, site=None, peer=None):
        """Links touching `site` (both directions), or between site and peer, or all."""
        out = []
        for (f, t), r in self.links.items():
            if site is None or (site in (f, t) and (peer is None or peer in (f, t))):
                out.append(r)
        return out

    def set(self, site=None, peer=None, **params):
        for r in self._select(site, peer):
            r.set(**params)

    def clear(self, site=None, peer=None):
        for r in self._select(site, peer):
            r.clear()

    def partition(self, site=None, peer=None, cut=False):
        """Cuts `site` off from every other site (or from `peer`); no site: everything."""
        for r in self._select(site, peer):
            r.partition(cut)

    def heal(self, site=None, peer=None):
        for r in self._select(site, peer):
            r.heal()

    def reset_all(self, site=None, peer=None):
        return sum(r.reset_all() for r in self._select(site, peer))

    def counters(self):
        return {f"{f}->{t}": dict(r.counters) for (f, t), r in self.links.items()}

    def stop(self, check=False):
        for r in self.links.values():
            r.stop()
