#!/usr/bin/python3
"""Recording relay for end-to-end tests: every POST body is saved as DIR/NNN.der, then
sent on to the real upstream (one connection per request, Connection: close) and its
answer relayed back. Usage: record_relay.py PORT UPSTREAM_URL DIR"""
import os
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM, DIR = int(sys.argv[1]), sys.argv[2], sys.argv[3]
COUNT = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        COUNT[0] += 1
        with open(os.path.join(DIR, "%03d.der" % COUNT[0]), "wb") as f:
            f.write(body)
        req = urllib.request.Request(UPSTREAM, data=body, method="POST",
                                     headers={"Content-Type": "application/pkixcmp",
                                              "Connection": "close"})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                status, data, ctype = r.status, r.read(), r.headers.get("Content-Type")
        except Exception as e:  # the test sees a 502 and the reason in the log
            sys.stderr.write("relay: %s\n" % e)
            status, data, ctype = 502, b"", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/pkixcmp")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
