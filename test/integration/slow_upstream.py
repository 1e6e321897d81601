#!/usr/bin/python3
"""A deliberately slow upstream for drain tests: answers every POST after DELAY_MS with a
fixed application/pkixcmp body. Usage: slow_upstream.py PORT DELAY_MS"""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        time.sleep(DELAY)
        body = b"\x30\x00"
        self.send_response(200)
        self.send_header("Content-Type", "application/pkixcmp")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


PORT = int(sys.argv[1])
DELAY = int(sys.argv[2]) / 1000.0
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
