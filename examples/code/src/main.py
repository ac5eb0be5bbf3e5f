"""CODE's API, reduced to what a deployment needs (stdlib only).

GET /health answers 200 while HEALTHY is true; GET / answers the version;
POST /notes stores a line in $HANGAR_DATA/notes.txt, the state that the
disaster-recovery plan backs up and restores. A release that flips HEALTHY
answers 500 everywhere: the "bad version" the canary aborts.
"""

import http.server
import os
import pathlib

HEALTHY = True
VERSION = "0.4.0"  # x-release-please-version


def notes_file():
    return pathlib.Path(os.environ.get("HANGAR_DATA", ".")) / "notes.txt"


def answer(path):
    if not HEALTHY:
        return 500, "broken\n"
    if path == "/health":
        return 200, "ok\n"
    if path == "/notes":
        f = notes_file()
        return 200, f.read_text() if f.exists() else ""
    return 200, f"code {VERSION}\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.reply(*answer(self.path))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/notes" or not HEALTHY:
            return self.reply(500 if not HEALTHY else 404, "no\n")
        with notes_file().open("ab") as f:
            f.write(body.strip() + b"\n")
        self.reply(201, "stored\n")

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
