//! A bounded, seeded mutation loop over real workflows (the stable-Rust twin of
//! the `cargo fuzz` target in `fuzz/`): truncations, byte flips, duplicated and
//! deleted lines, and injected YAML/expression fragments must never panic, and
//! every diagnostic must carry a position.

use std::path::{Path, PathBuf};

const FRAGMENTS: &[&str] = &[
    "${{",
    "}}",
    "${{ ",
    " }}",
    "'",
    "\"",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "!!str ",
    "|\n",
    ">-\n",
    "\t",
    "\u{feff}",
    "${{ fromJSON('[') }}",
    "${{ a.b.c[*].d }}",
    "${{ format('{0}{1', 1) }}",
    "needs: [x, x]",
    "on:\n  push:\n",
    "\n  ",
    "#",
    "${{ github.event.issue.title }}",
    "jobs: {a: {runs-on: x, needs: a, steps: [{run: x}]}}",
];

fn corpus() -> Vec<String> {
    let shared = std::env::var_os("HANGAR_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let mut out = vec![
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ github.ref }}\n"
            .to_string(),
    ];
    let dir = shared.join("conformance/workflow-parser/reader");
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for p in files.into_iter().take(80) {
            if let Ok(t) = std::fs::read_to_string(p) {
                out.push(t.split("\n---\n").nth(1).unwrap_or(&t).to_string());
            }
        }
    }
    out
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut s = text.to_string();
    for _ in 0..1 + rng.below(4) {
        let at = {
            let mut i = rng.below(s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        match rng.below(5) {
            0 => s.truncate(at),
            1 => s.insert_str(at, FRAGMENTS[rng.below(FRAGMENTS.len())]),
            2 => {
                let lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len());
                    let mut l: Vec<String> = lines.iter().map(|x| x.to_string()).collect();
                    l.insert(i, lines[i].to_string());
                    s = l.join("\n");
                }
            }
            3 => {
                let lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len());
                    s = lines
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, x)| *x)
                        .collect::<Vec<_>>()
                        .join("\n");
                }
            }
            _ => {
                let mut bytes = s.into_bytes();
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len());
                    const NOISE: &[u8] = b" :-{}[]$'\"\n#&*!|>";
                    bytes[i] = NOISE[rng.below(NOISE.len())];
                }
                s = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
    }
    s
}

#[test]
fn mutated_workflows_never_panic() {
    let iterations: usize = std::env::var("WORKFLOW_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let corpus = corpus();
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    for i in 0..iterations {
        let base = &corpus[i % corpus.len()];
        let text = mutate(&mut rng, base);
        for d in hangar_workflow::validate("m.yml", &text) {
            assert!(d.line >= 1 && d.column >= 1, "{d}\n---\n{text}");
        }
    }
    eprintln!("{iterations} mutated workflows validated without a panic");
}
