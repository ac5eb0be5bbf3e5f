"""Menteebot's hello-world microservice (stdlib only)."""

import http.server
import os

import health_check
import version


def answer(path):
    if path == "/health":
        return health_check.health()
    if not health_check.HEALTHY:
        return 500, "broken\n"
    return 200, f"Hello from Menteebot {version.current()}\n"


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
    port = int(os.environ.get("PORT", "5000"))
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
