//! `hangar up`'s live logs: every instance's output, line by line, prefixed
//! with `service[index]` the way `docker compose up` prefixes containers.
//!
//! Instances write to their own log files (so their output survives a restart
//! of hangar, which adopts them); this follows those files rather than pipes.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hangar_deploy::Controller;

/// Colours given to services in turn on a terminal.
const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

struct Followed {
    prefix: String,
    offset: u64,
    /// Bytes after the last newline, held until the line is complete.
    partial: Vec<u8>,
}

/// Sizes of the log files that exist now: only what is written after this is shown.
pub fn baseline(logs: &Path) -> HashMap<PathBuf, u64> {
    std::fs::read_dir(logs)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect()
}

/// Prints new log lines of every instance until cancelled.
pub async fn follow(ctl: Arc<Controller>, mut baseline: HashMap<PathBuf, u64>) {
    let colour = std::io::stdout().is_terminal();
    let mut files: HashMap<PathBuf, Followed> = HashMap::new();
    let mut service_colour: HashMap<String, &str> = HashMap::new();
    loop {
        for svc in ctl.status().services {
            let n = service_colour.len();
            let c = *service_colour
                .entry(svc.service.clone())
                .or_insert(COLOURS[n % COLOURS.len()]);
            for inst in svc.instances {
                files.entry(inst.log.clone()).or_insert_with(|| {
                    let label = format!("{}[{}]", inst.service, inst.index);
                    Followed {
                        prefix: if colour {
                            format!("\x1b[{c}m{label:<12}|\x1b[0m ")
                        } else {
                            format!("{label:<12}| ")
                        },
                        offset: baseline.remove(&inst.log).unwrap_or(0),
                        partial: Vec::new(),
                    }
                });
            }
        }
        {
            let mut out = std::io::stdout().lock();
            for (path, f) in files.iter_mut() {
                for line in read_new_lines(path, f) {
                    let _ = writeln!(out, "{}{}", f.prefix, String::from_utf8_lossy(&line));
                }
            }
            let _ = out.flush();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Complete lines appended to `path` since the last call.
fn read_new_lines(path: &Path, f: &mut Followed) -> Vec<Vec<u8>> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len < f.offset {
        // Truncated or replaced: start over.
        f.offset = 0;
        f.partial.clear();
    }
    if len == f.offset || file.seek(SeekFrom::Start(f.offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    f.offset += buf.len() as u64;
    f.partial.extend_from_slice(&buf);
    let mut lines = Vec::new();
    while let Some(at) = f.partial.iter().position(|&b| b == b'\n') {
        let mut line: Vec<u8> = f.partial.drain(..=at).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        lines.push(line);
    }
    lines
}
