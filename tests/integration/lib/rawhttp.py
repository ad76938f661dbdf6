"""rawhttp.py - HTTP/1.1 over plain sockets, every byte under the test's control.

    c = RawConn("127.0.0.1", port)                 # or tls=True, ca=...
    c.send(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    r = c.read_response()                           # r.status, r.headers, r.body, r.code
    assert c.closed_within(2.0)                     # the server hung up

    s3 = RawS3(endpoint_host, port, "AKIDCLIENT", "secret")   # signs with lib/awsv4.py
    r = s3.request("PUT", "/bucket/key", body=b"data")         # one kept-alive connection
"""

import re
import socket
import ssl
import time

from lib import awsv4


class Response:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers          # [(name, value)] as received
        self.body = body
        self.version = version

    def header(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def code(self):
        """The S3 <Code> of an XML error body, or None."""
        return self.xml("Code")

    def xml(self, element):
        m = re.search(rb"<%s>(.*?)</%s>" % (element.encode(), element.encode()), self.body, re.S)
        return m.group(1).decode() if m else None

    @property
    def closes(self):
        """The server said it closes the connection after this response."""
        return "close" in (self.header("connection") or "").lower()

    def __repr__(self):
        head = "\n".join(f"{n}: {v}" for n, v in self.headers)
        body = self.body if len(self.body) <= 600 else self.body[:600] + b"..."
        return f"<Response {self.status} {self.reason}\n{head}\n\n{body!r}>"


class RawConn:
    """One client connection; requests and responses are bytes the caller chooses."""

    def __init__(self, host, port, tls=False, ca=None, timeout=15.0, server_hostname=None,
                 rcvbuf=None):
        self.host, self.port = host, port
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except OSError:
            s.close()
            raise
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.create_default_context(cafile=ca)
            ctx.set_alpn_protocols(["http/1.1"])
            s = ctx.wrap_socket(s, server_hostname=server_hostname or host)
        self.sock = s
        self.buf = b""
        self.timeout = timeout

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(1 << 16)
        if not d:
            raise EOFError("connection closed by the server")
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method="GET", timeout=None, keep_continue=False):
        """Reads one response (a 100 Continue is skipped unless keep_continue)."""
        self.sock.settimeout(timeout or self.timeout)
        while True:
            status_line = self._line().decode("latin-1")
            version, status, reason = (status_line.split(" ", 2) + [""])[:3]
            headers = []
            while True:
                line = self._line()
                if not line:
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers.append((name, value.strip()))
            status = int(status)
            if status == 100 and not keep_continue:
                continue
            break
        r = Response(status, reason, headers, b"", version)
        if method == "HEAD" or status in (204, 304) or status < 200:
            return r
        te = (r.header("transfer-encoding") or "").lower()
        if te == "chunked":
            body = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body.append(self._exactly(size))
                self._line()
            r.body = b"".join(body)
        elif r.header("content-length") is not None:
            r.body = self._exactly(int(r.header("content-length")))
        else:
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            r.body, self.buf = self.buf, b""
        return r

    def request(self, data, method=None, timeout=None):
        self.send(data)
        return self.read_response(method or data.split(b" ", 1)[0].decode(), timeout)

    def closed_within(self, seconds):
        """True when the server closes (EOF or reset) within SECONDS; data read meanwhile is
        kept in .buf."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(1 << 16)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                return True
            except OSError:
                return True
            if not d:
                return True
            self.buf += d


def build(method, target, headers, body=b"", version="HTTP/1.1"):
    """A raw request: request line, headers in order (nothing added), blank line, body."""
    lines = [f"{method} {target} {version}"] + [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class RawS3:
    """Signs and sends S3 requests over one kept-alive RawConn (reopened when closed)."""

    def __init__(self, host, port, access_key, secret, tls=False, ca=None, region="us-east-1",
                 timeout=30.0, host_header=None):
        self.host, self.port, self.tls, self.ca, self.timeout = host, port, tls, ca, timeout
        self.host_header = host_header      # Host to send and sign (virtual-host style)
        self.signer = awsv4.Signer(access_key, secret, region)
        self.conn = None

    @classmethod
    def of(cls, obj, tls=False, access_key=None, secret=None, **kw):
        """For a bed object (RgwSite, Proxy): its http or https port, its keys by default."""
        port = obj.tls_port if tls else obj.port
        return cls("127.0.0.1", port, access_key or obj.access_key, secret or obj.secret,
                   tls=tls, ca=obj.ca if tls else None, **kw)

    def with_keys(self, access_key, secret, region=None):
        """Another client to the same place, signing with other keys (own connection)."""
        return RawS3(self.host, self.port, access_key, secret, tls=self.tls, ca=self.ca,
                     region=region or self.signer.region, timeout=self.timeout,
                     host_header=self.host_header)

    @property
    def hostport(self):
        return f"{self.host}:{self.port}"

    def connect(self):
        return RawConn(self.host, self.port, tls=self.tls, ca=self.ca, timeout=self.timeout)

    def sign(self, method, target, headers=(), body=b"", payload=None, **kw):
        """Headers of a signed request; PAYLOAD: None = hex SHA-256 of BODY, else the
        x-amz-content-sha256 value to declare."""
        hdrs = [("host", self.host_header or self.hostport)] + list(headers)
        if payload is None:
            payload = awsv4.sha256_hex(body)
        return self.signer.sign(method, target, hdrs, payload, **kw)

    def raw(self, method, target, headers=(), body=b"", payload=None, content_length=True,
            **kw):
        """The bytes of a signed request (Content-Length added unless told not to)."""
        signed = self.sign(method, target, headers, body, payload, **kw)
        hdrs = list(signed.headers)
        if content_length and (body or method in ("PUT", "POST")):
            hdrs.append(("content-length", str(len(body))))
        return build(method, target, hdrs, body)

    def send_raw(self, data, method, conn=None, timeout=None):
        c = conn or self._conn()
        c.send(data)
        r = c.read_response(method, timeout)
        if conn is None and r.closes:
            self.close()
        return r

    def request(self, method, target, headers=(), body=b"", payload=None, conn=None, **kw):
        return self.send_raw(self.raw(method, target, headers, body, payload, **kw), method,
                             conn)

    def _conn(self):
        if self.conn is None:
            self.conn = self.connect()
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
