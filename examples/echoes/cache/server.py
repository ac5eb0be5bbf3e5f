"""The local stack's Redis (localhost:6379 in start-local.sh), reduced to a
stand-in that needs nothing installed: Redis' inline commands over TCP
(`PING`, `GET key`, `SET key value`, `INCR key`, `DEL key`), answered in
RESP as `redis-cli` expects. What it holds is written to its data directory
after every change, as Redis' append-only file would be, so a restart keeps it.

    python3 cache/server.py PORT DATA_DIR
"""
import json
import os
import socket
import sys
import threading

port, data = int(sys.argv[1]), sys.argv[2]
os.makedirs(data, exist_ok=True)
dump = os.path.join(data, "dump.json")
try:
    with open(dump) as f:
        store = json.load(f)
except (OSError, ValueError):
    store = {}
lock = threading.Lock()


def save():
    tmp = dump + ".tmp"
    with open(tmp, "w") as f:
        json.dump(store, f)
    os.replace(tmp, dump)


def bulk(value):
    if value is None:
        return b"$-1\r\n"
    raw = value.encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def run(words):
    cmd, args = words[0].upper(), words[1:]
    with lock:
        if cmd == "PING":
            return b"+PONG\r\n"
        if cmd == "GET" and len(args) == 1:
            return bulk(store.get(args[0]))
        if cmd == "SET" and len(args) == 2:
            store[args[0]] = args[1]
            save()
            return b"+OK\r\n"
        if cmd == "INCR" and len(args) == 1:
            try:
                n = int(store.get(args[0], "0")) + 1
            except ValueError:
                return b"-ERR value is not an integer or out of range\r\n"
            store[args[0]] = str(n)
            save()
            return b":%d\r\n" % n
        if cmd == "DEL" and args:
            n = sum(1 for k in args if store.pop(k, None) is not None)
            save()
            return b":%d\r\n" % n
    return b"-ERR unknown command '%s'\r\n" % words[0].encode()


def serve(conn):
    with conn:
        for line in conn.makefile("rb"):
            words = line.decode(errors="replace").split()
            if words:
                conn.sendall(run(words))


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(128)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
