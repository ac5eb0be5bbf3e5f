"""Echoes' backend API, reduced to what a deployment needs (stdlib only).

GET /health answers 200 while HEALTHY is true; GET /api/echoes lists echoes;
GET /api/visits counts in the cache (Redis at REDIS_URL, `tcp://HOST:PORT`,
which hangar.yml fills from the cache service's address).
A release that flips HEALTHY answers 500 everywhere: the "bad version"
the example's deployment rolls back from.
"""

import http.server
import json
import os
import socket
import urllib.parse

HEALTHY = True
STAGE = os.environ.get("STAGE", "local")


def answer(path):
    if not HEALTHY:
        return 500, {"error": "broken"}
    if path == "/health":
        return 200, {"status": "ok", "stage": STAGE}
    return 200, {"echoes": [], "stage": STAGE}


def visits():
    """INCR visits in the cache, on a connection of its own."""
    url = urllib.parse.urlsplit(os.environ["REDIS_URL"])
    with socket.create_connection((url.hostname, url.port), timeout=5) as conn:
        conn.sendall(b"INCR visits\r\n")
        reply = conn.makefile("rb").readline().decode().strip()
    if not reply.startswith(":"):
        raise OSError(f"the cache answered {reply!r}")
    return int(reply[1:])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if HEALTHY and self.path == "/api/visits":
            try:
                status, body = 200, {"visits": visits(), "stage": STAGE}
            except (OSError, KeyError, ValueError) as e:
                status, body = 503, {"error": f"cache: {e}"}
        else:
            status, body = answer(self.path)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
