//! The coverage gate: coverage reports read into one line map, the total
//! measured, and the lines a change adds measured as diff-cover measures
//! them (added lines that the report knows about; covered when hit at least
//! once).
//!
//! Formats: lcov (`SF:`/`DA:`), Cobertura XML (coverage.py, gcovr, many
//! others), JaCoCo XML, Go cover profiles (`mode: set`). The format is told
//! from the content, not the name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

/// Hits per line per file, merged over every report read.
#[derive(Debug, Default, Clone)]
pub struct Coverage {
    /// Path as the report wrote it → line → hits.
    pub files: BTreeMap<String, BTreeMap<u32, u64>>,
}

/// Covered and coverable lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub covered: usize,
    pub lines: usize,
}

impl Tally {
    /// Percent covered; 100 when there is nothing to cover.
    pub fn percent(self) -> f64 {
        if self.lines == 0 {
            100.0
        } else {
            self.covered as f64 * 100.0 / self.lines as f64
        }
    }
}

impl Coverage {
    fn add(&mut self, file: &str, line: u32, hits: u64) {
        let e = self
            .files
            .entry(file.to_string())
            .or_default()
            .entry(line)
            .or_insert(0);
        *e = e.saturating_add(hits);
    }

    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for lines in self.files.values() {
            t.lines += lines.len();
            t.covered += lines.values().filter(|h| **h > 0).count();
        }
        t
    }

    pub fn per_file(&self) -> Vec<(String, Tally)> {
        self.files
            .iter()
            .map(|(f, lines)| {
                (
                    f.clone(),
                    Tally {
                        lines: lines.len(),
                        covered: lines.values().filter(|h| **h > 0).count(),
                    },
                )
            })
            .collect()
    }

    /// The report's entry for a repository path: the same path, or one that
    /// ends with it (reports often hold absolute or package-relative paths).
    fn lines_of(&self, repo_path: &str) -> Option<&BTreeMap<u32, u64>> {
        if let Some(l) = self.files.get(repo_path) {
            return Some(l);
        }
        self.files.iter().find_map(|(f, l)| {
            let f = f.replace('\\', "/");
            (f.ends_with(&format!("/{repo_path}")) || repo_path.ends_with(&format!("/{f}")))
                .then_some(l)
        })
    }
}

/// Reads one report, by its content.
pub fn read(path: &Path, into: &mut Coverage) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let head = text.trim_start();
    if head.starts_with("mode:") {
        go_cover(&text, path, into)
    } else if head.starts_with('<') {
        if text.contains("<report") && text.contains("<sourcefile") {
            jacoco(&text, path, into)
        } else if text.contains("<coverage") {
            cobertura(&text, path, into)
        } else {
            bail!(
                "{}: an XML file that is neither Cobertura (<coverage>) nor JaCoCo (<report>)",
                path.display()
            )
        }
    } else if text.lines().any(|l| l.starts_with("SF:")) {
        lcov(&text, path, into)
    } else {
        bail!(
            "{}: not a coverage report hangar reads (lcov, Cobertura XML, JaCoCo XML, Go cover profile)",
            path.display()
        )
    }
}

fn lcov(text: &str, path: &Path, into: &mut Coverage) -> Result<()> {
    let mut file: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(f) = line.strip_prefix("SF:") {
            file = Some(f.to_string());
        } else if let Some(da) = line.strip_prefix("DA:") {
            let mut parts = da.split(',');
            let (Some(n), Some(h)) = (parts.next(), parts.next()) else {
                bail!("{}:{}: `{line}` is not DA:line,hits", path.display(), i + 1);
            };
            let n: u32 = n.parse().map_err(|_| {
                anyhow!("{}:{}: bad line number in `{line}`", path.display(), i + 1)
            })?;
            // lcov may write hits as a float (`1.0`) or a negative marker.
            let h: u64 = h
                .parse::<f64>()
                .map(|h| h.max(0.0) as u64)
                .map_err(|_| anyhow!("{}:{}: bad hit count in `{line}`", path.display(), i + 1))?;
            let Some(f) = &file else {
                bail!("{}:{}: DA: before any SF:", path.display(), i + 1);
            };
            into.add(f, n, h);
        } else if line == "end_of_record" {
            file = None;
        }
    }
    Ok(())
}

/// `file:startLine.col,endLine.col numStatements count`: every line of the
/// block counts, and a line in several blocks is covered when one is.
fn go_cover(text: &str, path: &Path, into: &mut Coverage) -> Result<()> {
    let mut lines: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || {
            anyhow!(
                "{}:{}: `{line}` is not a Go cover profile line",
                path.display(),
                i + 1
            )
        };
        let (file, rest) = line.rsplit_once(':').ok_or_else(bad)?;
        let mut f = rest.split_whitespace();
        let (Some(range), Some(_stmts), Some(count)) = (f.next(), f.next(), f.next()) else {
            return Err(bad());
        };
        let (start, end) = range.split_once(',').ok_or_else(bad)?;
        let line_of = |s: &str| s.split('.').next().and_then(|n| n.parse::<u32>().ok());
        let (Some(a), Some(b)) = (line_of(start), line_of(end)) else {
            return Err(bad());
        };
        let count: u64 = count.parse().map_err(|_| bad())?;
        for n in a..=b.max(a) {
            let e = lines.entry((file.to_string(), n)).or_insert(0);
            *e = (*e).max(count);
        }
    }
    for ((f, n), h) in lines {
        into.add(&f, n, h);
    }
    Ok(())
}

fn attr(e: &quick_xml::events::BytesStart, name: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (a.key.as_ref() == name).then(|| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_default()
        })
    })
}

/// Cobertura: `<class filename="..."><lines><line number hits/>`, paths
/// relative to one of `<sources><source>`; the first source that holds the
/// file is joined, as diff-cover resolves them.
fn cobertura(text: &str, path: &Path, into: &mut Coverage) -> Result<()> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut class_file: Option<String> = None;
    let mut in_method = 0usize;
    loop {
        let at = reader.buffer_position();
        match reader
            .read_event()
            .map_err(|e| anyhow!("{}: invalid XML at byte {at}: {e}", path.display()))?
        {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "class" => class_file = attr(&e, "filename"),
                "method" => in_method += 1,
                // Lines under <methods> repeat the class's own <lines>.
                "line" if in_method == 0 => {
                    if let (Some(f), Some(n), Some(h)) =
                        (&class_file, attr(&e, "number"), attr(&e, "hits"))
                    {
                        let n: u32 = n.parse().map_err(|_| {
                            anyhow!("{}: <line number=\"{n}\"> is not a number", path.display())
                        })?;
                        let h = h.parse::<f64>().map(|h| h.max(0.0) as u64).unwrap_or(0);
                        into.add(f, n, h);
                    }
                }
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "method" => in_method = in_method.saturating_sub(1),
                "class" => class_file = None,
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(())
}

/// JaCoCo: `<package name="com/x"><sourcefile name="A.java"><line nr mi ci>`;
/// a line is covered when one of its instructions ran (`ci > 0`).
fn jacoco(text: &str, path: &Path, into: &mut Coverage) -> Result<()> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut package = String::new();
    let mut source: Option<String> = None;
    loop {
        let at = reader.buffer_position();
        match reader
            .read_event()
            .map_err(|e| anyhow!("{}: invalid XML at byte {at}: {e}", path.display()))?
        {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "package" => package = attr(&e, "name").unwrap_or_default(),
                "sourcefile" => {
                    source = attr(&e, "name").map(|n| {
                        if package.is_empty() {
                            n
                        } else {
                            format!("{package}/{n}")
                        }
                    })
                }
                "line" => {
                    if let (Some(f), Some(n), Some(ci)) = (&source, attr(&e, "nr"), attr(&e, "ci"))
                    {
                        let n: u32 = n.parse().map_err(|_| {
                            anyhow!("{}: <line nr=\"{n}\"> is not a number", path.display())
                        })?;
                        into.add(f, n, ci.parse().unwrap_or(0));
                    }
                }
                _ => {}
            },
            Event::End(e) if e.local_name().as_ref() == "sourcefile" => source = None,
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(())
}

/// Lines a change adds, per repository path: `git diff BASE...HEAD` (what
/// the branch adds since it left BASE) plus uncommitted changes, as
/// diff-cover compares.
pub fn added_lines(repo: &Path, base: &str) -> Result<BTreeMap<String, Vec<u32>>> {
    if base.starts_with('-') {
        bail!("--base {base}: a branch or commit, not an option");
    }
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let range = format!("{base}...HEAD");
    for args in [
        vec![
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--unified=0",
            "--end-of-options",
            range.as_str(),
        ],
        vec![
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--unified=0",
            "--cached",
        ],
        vec!["diff", "--no-color", "--no-ext-diff", "--unified=0"],
    ] {
        // The range went after `--end-of-options` above; the wrapper is the
        // tree's one spawn of git (see hangar_git).
        let o = hangar_git::Git::new(repo)
            .args(&args)
            .into_command()
            .output()
            .context("running git diff")?;
        if !o.status.success() {
            bail!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        parse_diff(&String::from_utf8_lossy(&o.stdout), &mut out);
    }
    for lines in out.values_mut() {
        lines.sort_unstable();
        lines.dedup();
    }
    Ok(out)
}

fn parse_diff(diff: &str, out: &mut BTreeMap<String, Vec<u32>>) {
    let mut file: Option<String> = None;
    for line in diff.lines() {
        if let Some(p) = line.strip_prefix("+++ ") {
            file = p.strip_prefix("b/").map(str::to_string);
        } else if let Some(h) = line.strip_prefix("@@ ") {
            // @@ -a,b +c,d @@
            let Some(plus) = h.split_whitespace().find(|p| p.starts_with('+')) else {
                continue;
            };
            let mut it = plus[1..].split(',');
            let start: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let count: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(1);
            if let Some(f) = &file {
                out.entry(f.clone())
                    .or_default()
                    .extend(start..start + count);
            }
        }
    }
}

/// The added lines the report knows about: per file, covered and uncovered.
#[derive(Debug, Default)]
pub struct DiffCoverage {
    pub files: Vec<DiffFile>,
}

#[derive(Debug)]
pub struct DiffFile {
    pub path: String,
    pub covered: Vec<u32>,
    pub uncovered: Vec<u32>,
}

impl DiffCoverage {
    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for f in &self.files {
            t.covered += f.covered.len();
            t.lines += f.covered.len() + f.uncovered.len();
        }
        t
    }
}

pub fn diff_coverage(cov: &Coverage, added: &BTreeMap<String, Vec<u32>>) -> DiffCoverage {
    let mut out = DiffCoverage::default();
    for (path, lines) in added {
        let Some(known) = cov.lines_of(path) else {
            continue;
        };
        let mut f = DiffFile {
            path: path.clone(),
            covered: Vec::new(),
            uncovered: Vec::new(),
        };
        for n in lines {
            match known.get(n) {
                Some(h) if *h > 0 => f.covered.push(*n),
                Some(_) => f.uncovered.push(*n),
                None => {}
            }
        }
        if !f.covered.is_empty() || !f.uncovered.is_empty() {
            out.files.push(f);
        }
    }
    out
}

/// Reads every report into one map.
pub fn read_all(paths: &[PathBuf]) -> Result<Coverage> {
    if paths.is_empty() {
        bail!("no coverage report given (lcov.info, coverage.xml, jacoco.xml, cover.out)");
    }
    let mut cov = Coverage::default();
    for p in paths {
        read(p, &mut cov)?;
    }
    if cov.files.is_empty() {
        bail!(
            "the coverage reports hold no lines ({}); was the test run instrumented?",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(cov)
}

/// What the gate decided: totals, failures against the thresholds, a
/// Markdown summary table and `::warning` annotations for uncovered added lines.
pub struct Gate {
    pub total: Tally,
    pub diff: Option<DiffCoverage>,
    pub failures: Vec<String>,
    pub summary: String,
    pub annotations: Vec<String>,
}

pub fn gate(
    files: &[PathBuf],
    dir: &std::path::Path,
    min: Option<f64>,
    diff_min: Option<f64>,
    base: Option<&str>,
) -> Result<Gate> {
    let cov = read_all(files)?;
    let total = cov.total();
    let diff = match base {
        Some(base) => Some(diff_coverage(&cov, &added_lines(dir, base)?)),
        None => None,
    };
    let mut failures = Vec::new();
    if let Some(min) = min
        && total.percent() < min
    {
        failures.push(format!(
            "total coverage {:.2}% is below --min {min}%",
            total.percent()
        ));
    }
    if let (Some(min), Some(d)) = (diff_min, &diff) {
        let t = d.total();
        if t.percent() < min {
            failures.push(format!(
                "coverage of the added lines {:.2}% ({} of {}) is below --diff-min {min}%",
                t.percent(),
                t.covered,
                t.lines
            ));
        }
    }
    let mut summary =
        String::from("| coverage | lines | covered | percent |\n|---|---:|---:|---:|\n");
    summary.push_str(&format!(
        "| total | {} | {} | {:.2}% |\n",
        total.lines,
        total.covered,
        total.percent()
    ));
    let mut annotations = Vec::new();
    if let Some(d) = &diff {
        let t = d.total();
        summary.push_str(&format!(
            "| added lines{} | {} | {} | {:.2}% |\n",
            base.map(|b| format!(" (since {b})")).unwrap_or_default(),
            t.lines,
            t.covered,
            t.percent()
        ));
        for f in &d.files {
            for (a, b) in ranges(&f.uncovered) {
                let what = if a == b {
                    format!("line {a} is")
                } else {
                    format!("lines {a}-{b} are")
                };
                annotations.push(format!(
                    "::warning file={},line={a},endLine={b},title=not covered::{what} added and not covered by tests",
                    f.path
                ));
            }
        }
    }
    Ok(Gate {
        total,
        diff,
        failures,
        summary,
        annotations,
    })
}

/// Consecutive lines as ranges, so one annotation covers a block.
fn ranges(lines: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &n in lines {
        match out.last_mut() {
            Some((_, b)) if *b + 1 == n => *b = n,
            _ => out.push((n, n)),
        }
    }
    out
}
