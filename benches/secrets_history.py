#!/usr/bin/env python3
"""Builds a git repository with N commits for benches/secrets-vs-kingfisher.sh.

`secrets_history.py CORPUS_DIR REPO N`: lines are drawn from the files of a
generated corpus (source code with planted secrets and decoys); each commit
appends 3-20 of them to one of ~300 files. Written through `git fast-import`,
so building 10,000 commits takes seconds.
"""
import os, random, subprocess, sys

corpus, repo, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = []
for dirpath, _, files in os.walk(corpus):
    for f in files:
        with open(os.path.join(dirpath, f), errors="replace") as fh:
            lines.extend(l.rstrip("\n") for l in fh)
rng = random.Random(7)
paths = [f"src/m{i:03d}/file{i}.{ext}" for i, ext in
         ((i, rng.choice(["py", "js", "go", "rs", "yaml", "env", "json"])) for i in range(300))]
content = {p: [] for p in paths}
subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)
fi = subprocess.Popen(["git", "-C", repo, "fast-import", "--quiet"], stdin=subprocess.PIPE)
out = fi.stdin
t = 1_600_000_000
for i in range(n):
    p = rng.choice(paths)
    start = rng.randrange(len(lines))
    content[p].extend(lines[start:start + rng.randint(3, 20)])
    data = ("\n".join(content[p]) + "\n").encode()
    msg = f"change {i}\n".encode()
    out.write(b"commit refs/heads/main\n")
    out.write(f"author Dev <dev@example.com> {t + i * 60} +0000\n".encode())
    out.write(f"committer Dev <dev@example.com> {t + i * 60} +0000\n".encode())
    out.write(b"data %d\n%s" % (len(msg), msg))
    out.write(f"M 100644 inline {p}\n".encode())
    out.write(b"data %d\n%s\n" % (len(data), data))
out.close()
if fi.wait() != 0:
    sys.exit("git fast-import failed")
subprocess.run(["git", "-C", repo, "checkout", "-q", "main"], check=True)
