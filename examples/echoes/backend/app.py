"""Echoes' backend API, reduced to what a deployment needs (stdlib only).

GET /health answers 200 while HEALTHY is true; GET /api/echoes lists echoes.
A release that flips HEALTHY answers 500 everywhere: the "bad version"
the example's deployment rolls back from.
"""

import http.server
import json
import os

HEALTHY = True
STAGE = os.environ.get("STAGE", "local")


def answer(path):
    if not HEALTHY:
        return 500, {"error": "broken"}
    if path == "/health":
        return 200, {"status": "ok", "stage": STAGE}
    return 200, {"echoes": [], "stage": STAGE}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
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
