//! `hangar scan deps --update`: the one place this crate fetches anything. It
//! downloads OSV's per-ecosystem exports (`<base>/<Ecosystem>/all.zip`, the
//! layout of osv-vulnerabilities.storage.googleapis.com and of a mirror of
//! it) and unpacks each into `<db>/<Ecosystem>/`.
//!
//! An archive from the network is hostile until read: only flat `*.json`
//! entries are written (no directories, no `..`, no links), each entry and the
//! whole archive have a size bound so a zip bomb stops early, and an
//! ecosystem's directory is replaced only once its new copy is complete, so a
//! failed or interrupted update leaves the previous database as it was.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::Ecosystem;

/// OSV's public bucket.
pub const DEFAULT_BASE: &str = "https://osv-vulnerabilities.storage.googleapis.com";

/// Bounds on what one ecosystem's export may hold. The largest real export
/// (npm) is a few hundred MB zipped; single records are kilobytes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub archive_bytes: u64,
    pub entry_bytes: u64,
    pub total_bytes: u64,
    pub entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            archive_bytes: 2 << 30,
            entry_bytes: 16 << 20,
            total_bytes: 8 << 30,
            entries: 1_000_000,
        }
    }
}

/// What one ecosystem's update did.
#[derive(Debug)]
pub struct Updated {
    pub ecosystem: Ecosystem,
    pub records: usize,
    pub bytes: u64,
}

/// Downloads and unpacks the exports of `ecosystems` into `db`.
pub fn update(
    db: &Path,
    base: &str,
    ecosystems: &[Ecosystem],
    limits: Limits,
) -> Result<Vec<Updated>> {
    std::fs::create_dir_all(db).with_context(|| format!("creating {}", db.display()))?;
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("hangar/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(std::time::Duration::from_secs(30 * 60))
        .build()?;
    let mut done = Vec::new();
    for &eco in ecosystems {
        let url = format!("{}/{}/all.zip", base.trim_end_matches('/'), eco.osv_name());
        let archive = download(&client, &url, limits.archive_bytes)?;
        let dest = db.join(eco.osv_name());
        let (records, bytes) = unpack(&archive, &dest, limits).with_context(|| {
            format!("{url}: not a usable OSV export; the database is unchanged")
        })?;
        done.push(Updated {
            ecosystem: eco,
            records,
            bytes,
        });
    }
    Ok(done)
}

fn download(client: &reqwest::blocking::Client, url: &str, max: u64) -> Result<Vec<u8>> {
    let resp = client
        .get(url)
        .send()
        .with_context(|| format!("downloading {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!("downloading {url}: the server answered {status}; the database is unchanged");
    }
    if resp.content_length().is_some_and(|n| n > max) {
        bail!("{url}: the archive is larger than {max} bytes; refused");
    }
    let mut body = Vec::new();
    resp.take(max + 1).read_to_end(&mut body).with_context(|| {
        format!("downloading {url}: the transfer broke off; the database is unchanged")
    })?;
    if body.len() as u64 > max {
        bail!("{url}: the archive is larger than {max} bytes; refused");
    }
    Ok(body)
}

/// Unpacks into a sibling directory, then swaps it in place of `dest`.
fn unpack(archive: &[u8], dest: &Path, limits: Limits) -> Result<(usize, u64)> {
    let mut zip =
        zip::ZipArchive::new(std::io::Cursor::new(archive)).context("not a zip archive")?;
    if zip.len() > limits.entries {
        bail!(
            "{} entries, more than the {} allowed",
            zip.len(),
            limits.entries
        );
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("db");
    let staging = parent.join(format!(".{name}.new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let result = (|| -> Result<(usize, u64)> {
        let (mut records, mut total) = (0usize, 0u64);
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i)?;
            if entry.is_dir() {
                continue;
            }
            let entry_name = entry.name()?.to_string();
            let file =
                safe_name(&entry_name).with_context(|| format!("entry {entry_name:?} refused"))?;
            if entry.size() > limits.entry_bytes {
                bail!(
                    "entry {entry_name}: {} bytes, more than {}",
                    entry.size(),
                    limits.entry_bytes
                );
            }
            // The declared size can lie: read at most one byte past the bound.
            let mut bytes = Vec::new();
            (&mut entry)
                .take(limits.entry_bytes + 1)
                .read_to_end(&mut bytes)
                .with_context(|| format!("entry {entry_name}"))?;
            if bytes.len() as u64 > limits.entry_bytes {
                bail!(
                    "entry {entry_name}: more than {} bytes once inflated",
                    limits.entry_bytes
                );
            }
            total += bytes.len() as u64;
            if total > limits.total_bytes {
                bail!("more than {} bytes once inflated", limits.total_bytes);
            }
            let mut out = std::fs::File::create(staging.join(&file))?;
            out.write_all(&bytes)?;
            records += 1;
        }
        Ok((records, total))
    })();
    match result {
        Ok(counts) => {
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            if dest.exists() {
                std::fs::rename(dest, &old)?;
            }
            std::fs::rename(&staging, dest)?;
            let _ = std::fs::remove_dir_all(&old);
            Ok(counts)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// OSV exports are flat: `ID.json` at the top. Anything else (a path, `..`,
/// an absolute name, another extension) is refused rather than written.
fn safe_name(name: &str) -> Result<PathBuf> {
    let ok = name.ends_with(".json")
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.')
        && name.len() <= 255;
    if !ok {
        bail!("OSV exports hold flat `ID.json` records only");
    }
    Ok(PathBuf::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flat_json_names() {
        assert!(safe_name("GHSA-xxxx.json").is_ok());
        for bad in [
            "../x.json",
            "/etc/x.json",
            "a/b.json",
            ".hidden.json",
            "x.sh",
            "a\\b.json",
        ] {
            assert!(safe_name(bad).is_err(), "{bad}");
        }
    }
}
