#!/usr/bin/python3
"""Recording CA with a canned answer, for tests: every POST body is saved as DIR/NNN.der;
the answer is the content of ANSWER_FILE when that file exists (application/pkixcmp), an
HTTP 502 otherwise (the CA is "down": raproxy answers systemUnavail, never retries).
Usage: canned_ca.py PORT DIR ANSWER_FILE"""
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DIR, ANSWER = int(sys.argv[1]), sys.argv[2], sys.argv[3]
COUNT = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        COUNT[0] += 1
        with open(os.path.join(DIR, "%03d.der" % COUNT[0]), "wb") as f:
            f.write(body)
        try:
            with open(ANSWER, "rb") as f:
                data, status, ctype = f.read(), 200, "application/pkixcmp"
        except OSError:
            data, status, ctype = b"", 502, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
