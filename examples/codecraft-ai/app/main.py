"""CodeCraft AI's API, reduced to what a deployment needs (stdlib only).

GET /health answers 200 while HEALTHY is true; GET / answers the version.
A release that flips HEALTHY answers 500 everywhere: the "bad version"
the example's deployment rolls back from.
"""

import http.server
import os
import pathlib

HEALTHY = True
VERSION = pathlib.Path(__file__).with_name("VERSION").read_text().strip()


def answer(path):
    if not HEALTHY:
        return 500, "broken\n"
    if path == "/health":
        return 200, "ok\n"
    return 200, f"codecraft-ai {VERSION}\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status, body = answer(self.path)
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
