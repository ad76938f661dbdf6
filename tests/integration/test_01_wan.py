"""The bed's WAN relay (tests/bed/wan.py) against a plain echo server: delay, bandwidth,
stalls, resets, partition and heal are what the tests built on it assume."""
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import wan  # noqa: E402


@pytest.fixture
def echo():
    """An echo server on a free port; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve(c):
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                c.sendall(data)

    def accept():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()


@pytest.fixture
def relay(echo):
    r = wan.Relay(echo, name="t").start()
    yield r
    r.stop()


def rtt(sock, n=1):
    t0 = time.monotonic()
    sock.sendall(b"x" * n)
    got = 0
    while got < n:
        d = sock.recv(65536)
        assert d, "connection closed"
        got += len(d)
    return time.monotonic() - t0


def connect(r, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", r.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def test_latency_is_added_each_way(relay):
    with connect(relay) as s:
        base = min(rtt(s) for _ in range(5))
        relay.set(latency=0.05)
        slow = [rtt(s) for _ in range(5)]
    assert base < 0.02
    assert all(0.095 <= t < 0.25 for t in slow), slow   # 50 ms up + 50 ms down


def test_bandwidth_cap(relay):
    relay.set(bandwidth=2_000_000)   # 2 MB/s each way
    with connect(relay, timeout=20) as s:
        t = rtt(s, 2_000_000)
    assert 0.9 <= t < 3.0, t


def test_stalls_and_resets_are_counted(relay):
    relay.set(stall_prob=1.0, stall=0.3)
    with connect(relay) as s:
        assert rtt(s) >= 0.6            # one stalled chunk each way
    relay.set(stall_prob=0.0, reset_prob=1.0)
    with connect(relay) as s:
        s.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            for _ in range(50):
                if not s.recv(10):
                    break
                time.sleep(0.01)
    assert relay.counters["stalls"] >= 2 and relay.counters["resets"] >= 1


def test_partition_blocks_and_heal_restores(relay):
    old = connect(relay)
    rtt(old)
    relay.partition()
    old.settimeout(1.0)
    with pytest.raises(socket.timeout):
        rtt(old)                                   # in-flight bytes wait
    new = connect(relay, timeout=1.0)              # the kernel accepts ...
    new.settimeout(1.0)
    new.sendall(b"y")
    with pytest.raises(socket.timeout):
        new.recv(10)                               # ... but nothing answers
    relay.heal()
    old.settimeout(5.0)
    new.settimeout(5.0)
    assert old.recv(10) == b"x"                    # the frozen byte arrives
    assert new.recv(10) == b"y"
    assert rtt(old) < 0.5 and rtt(new) < 0.5
    old.close()
    new.close()


def test_partition_cut_resets_open_connections(relay):
    s = connect(relay)
    rtt(s)
    relay.partition(cut=True)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        s.sendall(b"z")
        s.recv(10)
    s.close()
    relay.heal()
    with connect(relay) as s2:
        assert rtt(s2) < 0.5


def test_memory_bounded_when_the_reader_stalls(echo):
    """A sender that writes faster than the far side reads is pushed back: no more than
    QUEUE_BYTES wait in the relay."""
    r = wan.Relay(echo, name="t").start()
    try:
        r.partition()
        s = connect(r)
        s.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                sent += s.send(b"\0" * 65536)
            except BlockingIOError:
                time.sleep(0.05)
        # relay queue + two kernel socket buffers; far below what an unbounded relay takes
        assert sent < wan.QUEUE_BYTES + 16 * 1024 * 1024, sent
        s.close()
    finally:
        r.stop()
