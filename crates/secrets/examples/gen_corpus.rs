//! Writes the labelled secrets corpus of `tests/corpus` to a directory, for
//! the side-by-side benchmarks in `benches/`.
//!
//! `gen_corpus OUT [--files N] [--seed S] [--extra-lines L] [--target-mb M]`:
//! `OUT.labels.json` lists every planted secret and decoy (path, line, kind);
//! with `--target-mb`, batches of files are written until the tree holds M MB.

#[path = "../tests/corpus/mod.rs"]
mod corpus;

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let (mut files, mut seed, mut extra, mut target_mb) = (600usize, 0x5EC2E7u64, 0usize, 0u64);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{what} needs a number"))
        };
        match a.as_str() {
            "--files" => files = num("--files") as usize,
            "--seed" => seed = num("--seed"),
            "--extra-lines" => extra = num("--extra-lines") as usize,
            "--target-mb" => target_mb = num("--target-mb"),
            _ if out.is_none() => out = Some(PathBuf::from(a)),
            other => panic!("unexpected argument {other}"),
        }
    }
    let out = out
        .expect("usage: gen_corpus OUT [--files N] [--seed S] [--extra-lines L] [--target-mb M]");
    let mut labels = Vec::new();
    let mut written = 0u64;
    let mut batch = 0u64;
    loop {
        let c = corpus::generate_with(seed.wrapping_add(batch), files, extra);
        for (path, text) in &c.files {
            let path = if target_mb > 0 {
                format!("b{batch:04}/{path}")
            } else {
                path.clone()
            };
            let full = out.join(&path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, text).unwrap();
            written += text.len() as u64;
        }
        let prefix = if target_mb > 0 {
            format!("b{batch:04}/")
        } else {
            String::new()
        };
        for (set, list) in [("secret", &c.secrets), ("decoy", &c.decoys)] {
            for l in list {
                labels.push(serde_json::json!({
                    "set": set, "path": format!("{prefix}{}", l.path), "line": l.line, "kind": l.kind,
                }));
            }
        }
        batch += 1;
        if written >= target_mb * 1_000_000 {
            break;
        }
    }
    // Beside the tree, not in it: the labels must not be scanned.
    let labels_path = PathBuf::from(format!("{}.labels.json", out.display()));
    std::fs::write(&labels_path, serde_json::to_string(&labels).unwrap()).unwrap();
    eprintln!(
        "wrote {:.1} MB to {}, {} labels to {}",
        written as f64 / 1e6,
        out.display(),
        labels.len(),
        labels_path.display()
    );
}
