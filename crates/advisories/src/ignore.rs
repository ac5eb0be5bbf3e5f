//! Advisories a team has decided to accept for now, in osv-scanner's
//! `osv-scanner.toml` shape, so a file written for osv-scanner works as is:
//!
//! ```toml
//! [[IgnoredVulns]]
//! id = "RUSTSEC-2020-0071"        # the advisory or one of its aliases
//! ignoreUntil = 2027-01-31         # optional; after it the finding is back
//! reason = "time 0.1 is only used by the CLI's --help date"
//! ```
//!
//! An expired entry no longer hides anything and is reported; an entry with
//! no reason is honoured and reported.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::Vulnerability;

#[derive(Debug, Clone, Default)]
pub struct IgnoreList {
    entries: Vec<Entry>,
    file: String,
}

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    /// `YYYY-MM-DD`; the entry holds through that day.
    until: Option<String>,
    reason: Option<String>,
}

impl IgnoreList {
    pub fn load(path: &Path) -> Result<IgnoreList> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: toml::Table = toml::from_str(&text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    (
                        before.matches('\n').count() + 1,
                        before.len() - before.rfind('\n').map(|p| p + 1).unwrap_or(0) + 1,
                    )
                })
                .unwrap_or((1, 1));
            anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message())
        })?;
        let mut entries = Vec::new();
        let items = match doc.get("IgnoredVulns") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items.clone(),
            Some(_) => bail!(
                "{}: IgnoredVulns must be an array of tables ([[IgnoredVulns]])",
                path.display()
            ),
        };
        for (i, item) in items.iter().enumerate() {
            let Some(t) = item.as_table() else {
                bail!(
                    "{}: IgnoredVulns entry {} is not a table",
                    path.display(),
                    i + 1
                );
            };
            let Some(id) = t.get("id").and_then(|v| v.as_str()) else {
                bail!(
                    "{}: IgnoredVulns entry {} has no `id` (the advisory id, e.g. id = \"GHSA-xxxx-xxxx-xxxx\")",
                    path.display(),
                    i + 1
                );
            };
            let until = match t.get("ignoreUntil") {
                None => None,
                Some(toml::Value::Datetime(d)) => d.date.map(|d| d.to_string()),
                Some(toml::Value::String(s)) => Some(s.chars().take(10).collect()),
                Some(other) => bail!(
                    "{}: IgnoredVulns `{id}`: ignoreUntil `{other}` is not a date (write 2027-01-31)",
                    path.display()
                ),
            };
            if let Some(u) = &until
                && !is_date(u)
            {
                bail!(
                    "{}: IgnoredVulns `{id}`: ignoreUntil `{u}` is not a date (write 2027-01-31)",
                    path.display()
                );
            }
            entries.push(Entry {
                id: id.to_string(),
                until,
                reason: t
                    .get("reason")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .filter(|r| !r.trim().is_empty()),
            });
        }
        Ok(IgnoreList {
            entries,
            file: path.display().to_string(),
        })
    }

    /// Why `v` is ignored today, if an unexpired entry names it.
    pub fn reason_for(&self, v: &Vulnerability, today: &str) -> Option<String> {
        let e = self.entries.iter().find(|e| {
            (e.id == v.advisory || v.aliases.contains(&e.id))
                && e.until.as_deref().is_none_or(|u| today <= u)
        })?;
        Some(match (&e.reason, &e.until) {
            (Some(r), Some(u)) => format!("{r} (until {u})"),
            (Some(r), None) => r.clone(),
            (None, Some(u)) => format!("no reason given (until {u})"),
            (None, None) => "no reason given".into(),
        })
    }

    /// Entries that have expired or give no reason.
    pub fn warnings(&self, today: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.entries {
            if let Some(u) = &e.until
                && today > u.as_str()
            {
                out.push(format!(
                    "{}: the ignore of {} expired on {u}; it is reported again",
                    self.file, e.id
                ));
            }
            if e.reason.is_none() {
                out.push(format!(
                    "{}: the ignore of {} gives no reason; add reason = \"...\"",
                    self.file, e.id
                ));
            }
        }
        out
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Today's UTC date, `YYYY-MM-DD` (Howard Hinnant's civil-from-days).
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
