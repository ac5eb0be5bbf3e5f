//! Changelog entries, rendered with a minijinja template (the built-in one, or
//! `release.template` in hangar.yml). Template variables are documented in the README.

use std::path::Path;

use semver::Version;
use serde::Serialize;

use crate::commits::Commit;
use crate::config::Config;

/// What a template sees.
#[derive(Debug, Serialize)]
pub struct Context {
    pub version: String,
    pub previous_version: Option<String>,
    pub tag: String,
    pub previous_tag: Option<String>,
    /// UTC date, YYYY-MM-DD.
    pub date: String,
    pub repository_url: Option<String>,
    /// Link comparing the previous tag with this one, when the repository URL is known.
    pub compare_url: Option<String>,
    pub breaking: Vec<Commit>,
    pub sections: Vec<Section>,
}

#[derive(Debug, Serialize)]
pub struct Section {
    pub title: String,
    pub commits: Vec<Commit>,
}

impl Context {
    pub fn new(
        version: &Version,
        previous: Option<&str>,
        tag: &str,
        previous_tag: Option<&str>,
        commits: &[Commit],
        config: &Config,
        repo_url: Option<&str>,
    ) -> Context {
        let mut sections: Vec<Section> = Vec::new();
        for c in commits {
            let Some(title) = config.rule(&c.kind).section else {
                continue;
            };
            match sections.iter_mut().find(|s| s.title == title) {
                Some(s) => s.commits.push(c.clone()),
                None => sections.push(Section {
                    title,
                    commits: vec![c.clone()],
                }),
            }
        }
        // A fixed, familiar order: features, fixes, then the rest as configured.
        let rank = |t: &str| match t {
            "Features" => 0,
            "Bug Fixes" => 1,
            "Performance" => 2,
            _ => 3,
        };
        sections.sort_by_key(|s| rank(&s.title));
        Context {
            version: version.to_string(),
            previous_version: previous.map(String::from),
            tag: tag.into(),
            previous_tag: previous_tag.map(String::from),
            date: today(),
            repository_url: repo_url.map(String::from),
            compare_url: match (repo_url, previous_tag) {
                (Some(u), Some(p)) => Some(format!("{u}/compare/{p}...{tag}")),
                _ => None,
            },
            breaking: commits.iter().filter(|c| c.breaking).cloned().collect(),
            sections,
        }
    }
}

const DEFAULT_TEMPLATE: &str = r#"## {% if compare_url %}[{{ version }}]({{ compare_url }}){% else %}{{ version }}{% endif %} ({{ date }})
{% if breaking %}
### ⚠ BREAKING CHANGES
{% for c in breaking %}
* {% if c.scope %}**{{ c.scope }}:** {% endif %}{{ c.breaking_description or c.description }}{% if c.link %} ([{{ c.short }}]({{ c.link }})){% else %} ({{ c.short }}){% endif %}
{%- endfor %}
{% endif %}
{%- for s in sections %}
### {{ s.title }}
{% for c in s.commits %}
* {% if c.scope %}**{{ c.scope }}:** {% endif %}{{ c.description }}{% if c.link %} ([{{ c.short }}]({{ c.link }})){% else %} ({{ c.short }}){% endif %}
{%- endfor %}
{% endfor %}"#;

pub fn render(config: &Config, ctx: &Context) -> anyhow::Result<String> {
    let mut env = minijinja::Environment::new();
    let source = config.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
    env.add_template("changelog", source)
        .map_err(|e| anyhow::anyhow!("release.template: {e}"))?;
    let text = env
        .get_template("changelog")?
        .render(ctx)
        .map_err(|e| anyhow::anyhow!("release.template: {e}"))?;
    Ok(text.trim().to_string() + "\n")
}

/// Puts the new entry on top of the existing changelog, under its `# ` title if it has one;
/// older entries are left byte for byte.
pub fn prepend(path: &Path, entry: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = if old.is_empty() {
        format!("# Changelog\n\n{entry}")
    } else if old.starts_with("# ") {
        let (title, rest) = old.split_once('\n').unwrap_or((old.as_str(), ""));
        format!("{title}\n\n{entry}\n{}", rest.trim_start_matches('\n'))
    } else {
        format!("{entry}\n{old}")
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, new)
}

fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_date((secs / 86400) as i64)
}

/// Days since 1970-01-01 to YYYY-MM-DD (Howard Hinnant's algorithm; avoids a date crate for one line).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{:02}-{:02}", if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_date(0), "1970-01-01");
        assert_eq!(super::civil_date(19_723), "2024-01-01");
        assert_eq!(super::civil_date(20_513), "2026-03-01");
    }
}
