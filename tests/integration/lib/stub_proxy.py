#!/usr/bin/python3
"""stub_proxy.py -c FILE [-t] - stands in for s3tee-proxy in the bed's own tests.

Reads the same config (listen, listen_tls, tls_certificate, tls_certificate_key,
error_log), answers every HTTP request with 200 "stub", logs "reload" to the error log on
SIGHUP and exits 0 on SIGTERM. Misbehaves on request, so the bed's checks can be tested:
STUB_SANITIZER=1 prints an AddressSanitizer-like report at exit, STUB_EXIT=N exits with N,
STUB_IGNORE_TERM=1 ignores SIGTERM.
"""
import http.server
import os
import signal
import socketserver
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"stub\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main(argv):
    conf_path = argv[argv.index("-c") + 1]
    conf = {}
    for line in open(conf_path):
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition(" ")
            conf[k] = v.strip()
    if "-t" in argv:
        print("configuration ok")
        return 0
    errlog = open(conf.get("error_log", "/dev/null"), "a", buffering=1)
    stop = threading.Event()   # signals first: the bed may signal as soon as we listen
    signal.signal(signal.SIGHUP, lambda *a: errlog.write("reload\n"))
    if os.environ.get("STUB_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
    servers = []
    host, port = conf["listen"].rsplit(":", 1)
    servers.append(Server((host, int(port)), Handler))
    if "listen_tls" in conf:
        host, port = conf["listen_tls"].rsplit(":", 1)
        s = Server((host, int(port)), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(conf["tls_certificate"], conf["tls_certificate_key"])
        s.socket = ctx.wrap_socket(s.socket, server_side=True)
        servers.append(s)
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    errlog.write("stub started\n")
    while not stop.wait(0.1):
        pass
    errlog.write("stub stopping\n")
    if os.environ.get("STUB_SANITIZER") == "1":
        sys.stderr.write("=================================================================\n"
                         "==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n")
    return int(os.environ.get("STUB_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
