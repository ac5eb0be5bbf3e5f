#!/usr/bin/env python3
"""Scores secret scanners' reports against labels, for benches/secrets-accuracy.sh.

Each tool's report is reduced to a set of (path, line) pairs, paths relative
to the scanned root. A labelled secret is found when its line is reported; a
reported line that is not a labelled secret is a false positive.
"""
import csv, json, os, sys


def rel(path, root):
    path = os.path.normpath(path)
    root = os.path.normpath(root)
    if os.path.isabs(path) or path.startswith(root + os.sep):
        try:
            path = os.path.relpath(path, root)
        except ValueError:
            pass
    return path


def hangar(report, root):
    data = json.load(open(report))
    return {(rel(f["file"], root), f["line"]) for f in data["findings"]}


def kingfisher(report, root):
    out = set()
    text = open(report).read().strip()
    # The JSON envelope is followed by a summary object on the next line.
    data = json.JSONDecoder().raw_decode(text)[0]
    for f in data.get("findings", []):
        fin = f["finding"]
        out.add((rel(fin["path"], root), int(fin["line"])))
    return out


def detect_secrets(report, root):
    data = json.load(open(report))
    return {
        (rel(path, root), r["line_number"])
        for path, results in data["results"].items()
        for r in results
    }


TOOLS = {"hangar": hangar, "kingfisher": kingfisher, "detect-secrets": detect_secrets}


def labelled(args):
    labels_file, root = args[0], args[1]
    labels = json.load(open(labels_file))
    secrets = {(l["path"], l["line"]) for l in labels if l["set"] == "secret"}
    print(f"labelled corpus: {len(secrets)} secrets, {sum(1 for l in labels if l['set'] == 'decoy')} decoys")
    print(f"  {'tool':<16}{'recall':>10}{'precision':>11}{'found':>8}{'false+':>8}")
    for spec in args[2:]:
        name, report = spec.split("=", 1)
        got = TOOLS[name](report, root)
        tp = len(got & secrets)
        fp = len(got - secrets)
        recall = tp / len(secrets)
        precision = tp / max(tp + fp, 1)
        print(f"  {name:<16}{recall*100:>9.1f}%{precision*100:>10.1f}%{tp:>8}{fp:>8}")


def leaky(args):
    csv_file, root = args[0], args[1]
    risk = {}
    for row in csv.reader(l for l in open(csv_file) if l.strip() and not l.startswith("#")):
        if len(row) >= 2 and row[1].strip().isdigit() and int(row[1]) > 0:
            if os.path.isfile(os.path.join(root, row[0])):
                risk[row[0]] = int(row[1])
    results = {}
    for spec in args[2:]:
        name, report = spec.split("=", 1)
        per_file = {}
        for path, line in TOOLS[name](report, root):
            per_file.setdefault(path, set()).add(line)
        results[name] = per_file
    names = list(results)
    print("leaky-repo per-file recall (risk lines found / risk lines):")
    print("  " + f"{'file':<40}" + "".join(f"{n:>16}" for n in names))
    totals = {n: 0 for n in names}
    for path, n_risk in sorted(risk.items()):
        cells = []
        for n in names:
            hit = min(len(results[n].get(path, ())), n_risk)
            totals[n] += hit
            cells.append(f"{hit}/{n_risk}")
        print("  " + f"{path:<40}" + "".join(f"{c:>16}" for c in cells))
    all_risk = sum(risk.values())
    print("  " + f"{'overall':<40}" + "".join(f"{totals[n]*100/all_risk:>15.1f}%" for n in names))


if __name__ == "__main__":
    {"labelled": labelled, "leaky": leaky}[sys.argv[1]](sys.argv[2:])
