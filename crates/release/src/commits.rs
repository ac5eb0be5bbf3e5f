//! Conventional Commits, parsed with `git-conventional`; what does not conform is
//! kept and reported, never silently dropped.

use serde::Serialize;

use crate::config::{Bump, Config};
use crate::git::RawCommit;

#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    pub sha: String,
    pub short: String,
    pub author: String,
    pub time: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub scope: Option<String>,
    pub description: String,
    pub body: Option<String>,
    pub breaking: bool,
    pub breaking_description: Option<String>,
    pub link: Option<String>,
    #[serde(skip)]
    pub files: Vec<String>,
}

impl Commit {
    /// A commit that is not conventional, listed by its subject (the notes
    /// of a release forced with `--as` over such a history).
    pub fn plain(sha: &str, subject: &str, repo_url: Option<&str>) -> Commit {
        Commit {
            sha: sha.to_string(),
            short: sha.chars().take(7).collect(),
            author: String::new(),
            time: 0,
            kind: "other".into(),
            scope: None,
            description: subject.to_string(),
            body: None,
            breaking: false,
            breaking_description: None,
            link: repo_url.map(|u| format!("{u}/commit/{sha}")),
            files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NonConforming {
    pub sha: String,
    pub subject: String,
    pub error: String,
}

/// Splits commits into conventional ones and the rest; merge commits and reverted pairs are dropped.
pub fn classify(raw: Vec<RawCommit>, repo_url: Option<&str>) -> (Vec<Commit>, Vec<NonConforming>) {
    let mut commits = Vec::new();
    let mut bad = Vec::new();
    for c in &raw {
        let subject = c.message.lines().next().unwrap_or("").to_string();
        match git_conventional::Commit::parse(&c.message) {
            Ok(p) => {
                let breaking_description = p
                    .breaking_description()
                    .filter(|d| *d != p.description())
                    .map(String::from);
                commits.push(Commit {
                    sha: c.sha.clone(),
                    short: c.sha.chars().take(7).collect(),
                    author: c.author.clone(),
                    time: c.time,
                    kind: p.type_().as_str().to_ascii_lowercase(),
                    scope: p.scope().map(|s| s.as_str().to_string()),
                    description: p.description().to_string(),
                    body: p.body().map(String::from),
                    breaking: p.breaking(),
                    breaking_description,
                    link: repo_url.map(|u| format!("{u}/commit/{}", c.sha)),
                    files: c.files.clone(),
                });
            }
            Err(_) if c.parents > 1 => {} // a merge commit's own message says nothing about the change
            Err(_) if subject.starts_with("Revert \"") => commits.push(Commit {
                sha: c.sha.clone(),
                short: c.sha.chars().take(7).collect(),
                author: c.author.clone(),
                time: c.time,
                kind: "revert".into(),
                scope: None,
                description: subject.clone(),
                body: Some(c.message.clone()),
                breaking: false,
                breaking_description: None,
                link: repo_url.map(|u| format!("{u}/commit/{}", c.sha)),
                files: c.files.clone(),
            }),
            Err(e) => bad.push(NonConforming {
                sha: c.sha.clone(),
                subject,
                error: e.kind().to_string(),
            }),
        }
    }
    (drop_reverted(commits), bad)
}

/// A revert and the commit it reverts, both in the range, cancel out.
fn drop_reverted(commits: Vec<Commit>) -> Vec<Commit> {
    let reverted: Vec<String> = commits
        .iter()
        .filter(|c| c.kind == "revert")
        .filter_map(|c| {
            let body = c.body.as_deref().unwrap_or("");
            let i = body.find("This reverts commit ")?;
            Some(
                body[i + 20..]
                    .chars()
                    .take_while(|ch| ch.is_ascii_hexdigit())
                    .collect::<String>(),
            )
        })
        .filter(|sha| sha.len() >= 7)
        .collect();
    let cancelled: Vec<&str> = reverted
        .iter()
        .filter(|r| commits.iter().any(|c| c.sha.starts_with(r.as_str())))
        .map(String::as_str)
        .collect();
    commits
        .iter()
        .filter(|c| {
            let is_cancelled_target = cancelled.iter().any(|r| c.sha.starts_with(r));
            let is_cancelling_revert = c.kind == "revert"
                && cancelled
                    .iter()
                    .any(|r| c.body.as_deref().unwrap_or("").contains(r));
            !is_cancelled_target && !is_cancelling_revert
        })
        .cloned()
        .collect()
}

/// The bump the commits call for (breaking below 1.0.0 follows the configuration).
pub fn bump(commits: &[Commit], config: &Config, major_zero: bool) -> Bump {
    commits
        .iter()
        .map(|c| {
            if c.breaking {
                if major_zero {
                    config.breaking_below_1
                } else {
                    Bump::Major
                }
            } else {
                config.rule(&c.kind).bump
            }
        })
        .max()
        .unwrap_or(Bump::None)
}

/// `hangar commitlint`: the problems of one message, empty when it conforms.
pub fn lint(message: &str) -> Vec<String> {
    let subject = message.lines().next().unwrap_or("");
    if subject.starts_with("Merge ")
        || subject.starts_with("Revert \"")
        || subject.starts_with("fixup! ")
        || subject.starts_with("squash! ")
    {
        return Vec::new();
    }
    match git_conventional::Commit::parse(message.trim()) {
        Ok(c) => {
            let mut problems = Vec::new();
            if subject.len() > 100 {
                problems.push(format!(
                    "the subject is {} characters long; keep it under 100",
                    subject.len()
                ));
            }
            if c.description().ends_with('.') {
                problems.push("the description ends with a period".into());
            }
            if c.type_().as_str().chars().any(|ch| ch.is_ascii_uppercase()) {
                problems.push(format!("the type `{}` should be lower case", c.type_()));
            }
            problems
        }
        Err(e) => vec![format!(
            "`{subject}` is not a Conventional Commit ({}): write `type(scope): description`, e.g. `fix(api): handle empty body`",
            e.kind()
        )],
    }
}
