//! The release pull request on the forge, as release-please opens it: `hangar
//! release --pr` pushes `release/vX.Y.Z`, then opens the pull (merge) request
//! from it, or updates the one already open from that branch, so a release
//! never has two. Through the same client, headers and retry rules as the
//! commit statuses ([`crate::forge_status`]).
//!
//! The forges' documented endpoints:
//! - GitHub: `GET {api}/repos/{o}/{r}/pulls?state=open&head={o}:{branch}&base={base}`,
//!   then `PATCH …/pulls/{number}` or `POST …/pulls` (`title`, `head`, `base`, `body`);
//! - Gitea and Forgejo: the same under `/api/v1` (the list takes no `head`
//!   filter: open ones are matched on `head.ref` and `base.ref`);
//! - GitLab: `GET {api}/projects/{id}/merge_requests?state=opened&source_branch=…&target_branch=…`,
//!   then `PUT …/merge_requests/{iid}` or `POST …/merge_requests`
//!   (`source_branch`, `target_branch`, `title`, `description`).

use anyhow::{Context, bail};
use hangar_store::ForgeCredential;
use serde_json::{Value, json};

use crate::forge_status::{Forge, RetryPolicy, send};

/// The release to propose: `head` (the release branch) into `base`.
#[derive(Debug, Clone)]
pub struct ReleasePr {
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
}

/// What the forge did.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// `false` when an open one from the branch was updated instead.
    pub created: bool,
    /// The pull request's number (GitLab: the merge request's iid).
    pub number: u64,
    /// Its page, for people.
    pub url: String,
}

/// The forge, API root and project of a git remote URL, from what the user
/// said (`kind`, `api_url`, `project`) and, for what they left out, the URL
/// itself: `github.com` is GitHub and `gitlab.com` GitLab; another host needs
/// its kind, and its API root is the forge's documented one on that host
/// (`/api/v3` for GitHub Enterprise, `/api/v1` for Gitea, `/api/v4` for
/// GitLab). `None` when the remote says too little (a local path).
pub fn credential_for_remote(
    remote_url: &str,
    kind: Option<&str>,
    api_url: Option<&str>,
    project: Option<&str>,
    token: &str,
) -> Result<ForgeCredential, String> {
    let (host, path) = remote_host_path(remote_url).unzip();
    let forge = match kind {
        Some(k) => Forge::parse(k)
            .ok_or_else(|| format!("unknown forge `{k}`: use github, gitea, forgejo or gitlab"))?,
        None => match host.as_deref() {
            Some("github.com") => Forge::GitHub,
            Some("gitlab.com") => Forge::GitLab,
            _ => {
                return Err(format!(
                    "cannot tell which forge `{remote_url}` is on: name it with --forge github|gitea|forgejo|gitlab (and --forge-api when it is not on its public host)"
                ));
            }
        },
    };
    let api = match (api_url, host.as_deref()) {
        (Some(a), _) => a.trim_end_matches('/').to_string(),
        (None, Some(h)) => match (forge, forge.default_api_url()) {
            (Forge::GitHub, Some(d)) if h == "github.com" => d.to_string(),
            (Forge::GitLab, Some(d)) if h == "gitlab.com" => d.to_string(),
            (Forge::GitHub, _) => format!("https://{h}/api/v3"),
            (Forge::Gitea, _) => format!("https://{h}/api/v1"),
            (Forge::GitLab, _) => format!("https://{h}/api/v4"),
        },
        (None, None) => {
            return Err(format!(
                "the remote `{remote_url}` names no forge host: give the API root with --forge-api"
            ));
        }
    };
    let project = match (project, path) {
        (Some(p), _) => p.to_string(),
        (None, Some(p)) => p,
        (None, None) => {
            return Err(format!(
                "the remote `{remote_url}` names no repository on a forge: give it with --forge-project owner/name"
            ));
        }
    };
    let cred = ForgeCredential {
        kind: match forge {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::GitLab => "gitlab",
        }
        .into(),
        api_url: api,
        project,
        token: token.to_string(),
    };
    crate::forge_status::validate(&cred)?;
    Ok(cred)
}

/// `(host, owner/name)` of an https, ssh or scp-style remote URL.
fn remote_host_path(url: &str) -> Option<(String, String)> {
    let url = url.trim();
    let (host, path) = if let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .or_else(|| url.strip_prefix("ssh://"))
    {
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit('@').next()?;
        // An ssh port (`host:2222`) is not part of the forge's name.
        (host.split(':').next()?.to_string(), path.to_string())
    } else if url.contains("://") || url.starts_with('/') {
        return None;
    } else {
        let (user_host, path) = url.split_once(':')?;
        (user_host.rsplit('@').next()?.to_string(), path.to_string())
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    (!host.is_empty() && path.contains('/')).then(|| (host, path.to_string()))
}

/// Opens the release pull request, or updates the open one from the same
/// branch into the same base (its title and body become this release's).
pub async fn open_release_pr(
    client: &reqwest::Client,
    policy: &RetryPolicy,
    cred: &ForgeCredential,
    pr: &ReleasePr,
) -> anyhow::Result<Opened> {
    let forge = Forge::parse(&cred.kind).context("unknown forge")?;
    let api = cred.api_url.trim_end_matches('/');
    let headers = forge.headers(&cred.token);
    let owner = cred.project.split('/').next().unwrap_or_default();
    let (list_url, item_path) = match forge {
        Forge::GitHub => (
            reqwest::Url::parse_with_params(
                &format!("{api}/repos/{}/pulls", cred.project),
                &[
                    ("state", "open"),
                    ("head", &format!("{owner}:{}", pr.head)),
                    ("base", &pr.base),
                ],
            )?,
            format!("{api}/repos/{}/pulls", cred.project),
        ),
        Forge::Gitea => (
            reqwest::Url::parse_with_params(
                &format!("{api}/repos/{}/pulls", cred.project),
                &[("state", "open"), ("limit", "50")],
            )?,
            format!("{api}/repos/{}/pulls", cred.project),
        ),
        Forge::GitLab => {
            let base = format!(
                "{api}/projects/{}/merge_requests",
                cred.project.replace('/', "%2F")
            );
            (
                reqwest::Url::parse_with_params(
                    &base,
                    &[
                        ("state", "opened"),
                        ("source_branch", pr.head.as_str()),
                        ("target_branch", pr.base.as_str()),
                    ],
                )?,
                base,
            )
        }
    };
    let (out, listed) = send(
        client,
        policy,
        reqwest::Method::GET,
        list_url.as_str(),
        &headers,
        None,
    )
    .await;
    let Some(Value::Array(listed)) = listed else {
        bail!(
            "listing the open pull requests of {} on {api}: {}",
            cred.project,
            out.error.as_deref().unwrap_or("the answer is not a list")
        );
    };
    let existing = listed.iter().find(|p| match forge {
        // The forge filtered on both already; checked again all the same,
        // since a forge that ignores a filter would otherwise make us edit
        // someone else's pull request.
        Forge::GitHub | Forge::Gitea => {
            p.pointer("/head/ref").and_then(Value::as_str) == Some(&pr.head)
                && p.pointer("/base/ref").and_then(Value::as_str) == Some(&pr.base)
        }
        Forge::GitLab => {
            p["source_branch"].as_str() == Some(&pr.head)
                && p["target_branch"].as_str() == Some(&pr.base)
        }
    });
    let number_key = if forge == Forge::GitLab {
        "iid"
    } else {
        "number"
    };
    let (method, url, body, policy_used, created) = match existing {
        Some(p) => {
            let number = p[number_key]
                .as_u64()
                .context("the forge listed a pull request without its number")?;
            let (method, body) = match forge {
                Forge::GitLab => (
                    reqwest::Method::PUT,
                    json!({"title": pr.title, "description": pr.body}),
                ),
                _ => (
                    reqwest::Method::PATCH,
                    json!({"title": pr.title, "body": pr.body}),
                ),
            };
            // An edit is idempotent: retried like a status.
            (
                method,
                format!("{item_path}/{number}"),
                body,
                policy.clone(),
                false,
            )
        }
        None => {
            let body = match forge {
                Forge::GitLab => json!({
                    "source_branch": pr.head,
                    "target_branch": pr.base,
                    "title": pr.title,
                    "description": pr.body,
                    "remove_source_branch": true,
                }),
                _ => json!({
                    "title": pr.title,
                    "head": pr.head,
                    "base": pr.base,
                    "body": pr.body,
                }),
            };
            // A create is not idempotent: a timeout may have created it, and
            // a retry would open a second one. One attempt; running the
            // command again lists first and finds it.
            let once = RetryPolicy {
                attempts: 1,
                ..policy.clone()
            };
            (reqwest::Method::POST, item_path.clone(), body, once, true)
        }
    };
    let bytes = serde_json::to_vec(&body)?;
    let (out, answer) = send(client, &policy_used, method, &url, &headers, Some(&bytes)).await;
    let Some(answer) = answer.filter(|_| out.outcome == "delivered") else {
        bail!(
            "{} the release pull request from {} on {api}: {}",
            if created { "opening" } else { "updating" },
            pr.head,
            out.error.as_deref().unwrap_or(out.outcome)
        );
    };
    let url_key = if forge == Forge::GitLab {
        "web_url"
    } else {
        "html_url"
    };
    Ok(Opened {
        created,
        number: answer[number_key].as_u64().unwrap_or_default(),
        url: answer[url_key].as_str().unwrap_or_default().to_string(),
    })
}

/// Where the pull request of a release branch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrState {
    Open,
    Merged,
    Closed,
}

/// The release branch's pull request as the forge has it: the open one from
/// `head` into `base` if there is one, else the latest merged or closed one;
/// `None` when the branch never had one. `hangar release --pr` asks before it
/// refreshes a branch that exists already.
pub async fn release_pr_state(
    client: &reqwest::Client,
    policy: &RetryPolicy,
    cred: &ForgeCredential,
    head: &str,
    base: &str,
) -> anyhow::Result<Option<(PrState, Opened)>> {
    let forge = Forge::parse(&cred.kind).context("unknown forge")?;
    let api = cred.api_url.trim_end_matches('/');
    let owner = cred.project.split('/').next().unwrap_or_default();
    let url = match forge {
        Forge::GitHub => reqwest::Url::parse_with_params(
            &format!("{api}/repos/{}/pulls", cred.project),
            &[
                ("state", "all"),
                ("head", &format!("{owner}:{head}")),
                ("base", base),
            ],
        )?,
        Forge::Gitea => reqwest::Url::parse_with_params(
            &format!("{api}/repos/{}/pulls", cred.project),
            &[("state", "all"), ("limit", "50")],
        )?,
        Forge::GitLab => reqwest::Url::parse_with_params(
            &format!(
                "{api}/projects/{}/merge_requests",
                cred.project.replace('/', "%2F")
            ),
            &[
                ("state", "all"),
                ("source_branch", head),
                ("target_branch", base),
            ],
        )?,
    };
    let (out, listed) = send(
        client,
        policy,
        reqwest::Method::GET,
        url.as_str(),
        &forge.headers(&cred.token),
        None,
    )
    .await;
    let Some(Value::Array(listed)) = listed else {
        bail!(
            "listing the pull requests of {} on {api}: {}",
            cred.project,
            out.error.as_deref().unwrap_or("the answer is not a list")
        );
    };
    let (number_key, url_key) = if forge == Forge::GitLab {
        ("iid", "web_url")
    } else {
        ("number", "html_url")
    };
    let mut found: Vec<(PrState, Opened)> = listed
        .iter()
        .filter(|p| match forge {
            Forge::GitHub | Forge::Gitea => {
                p.pointer("/head/ref").and_then(Value::as_str) == Some(head)
                    && p.pointer("/base/ref").and_then(Value::as_str) == Some(base)
            }
            Forge::GitLab => {
                p["source_branch"].as_str() == Some(head)
                    && p["target_branch"].as_str() == Some(base)
            }
        })
        .filter_map(|p| {
            let state = match (forge, p["state"].as_str()?) {
                (Forge::GitLab, "opened") => PrState::Open,
                (Forge::GitLab, "merged") => PrState::Merged,
                (Forge::GitLab, _) => PrState::Closed,
                (_, "open") => PrState::Open,
                // GitHub says `merged_at`, Gitea `merged` too.
                (_, _) if p["merged"] == true || !p["merged_at"].is_null() => PrState::Merged,
                (_, _) => PrState::Closed,
            };
            Some((
                state,
                Opened {
                    created: false,
                    number: p[number_key].as_u64()?,
                    url: p[url_key].as_str().unwrap_or_default().to_string(),
                },
            ))
        })
        .collect();
    // The open one first, then the latest.
    found.sort_by_key(|(s, o)| (*s != PrState::Open, std::cmp::Reverse(o.number)));
    Ok(found.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_names_its_forge_and_project() {
        let c =
            credential_for_remote("git@github.com:acme/app.git", None, None, None, "t").unwrap();
        assert_eq!(
            (c.kind.as_str(), c.api_url.as_str(), c.project.as_str()),
            ("github", "https://api.github.com", "acme/app")
        );
        let c = credential_for_remote("https://gitlab.com/group/sub/app", None, None, None, "t")
            .unwrap();
        assert_eq!(c.api_url, "https://gitlab.com/api/v4");
        assert_eq!(c.project, "group/sub/app");
        let c = credential_for_remote(
            "ssh://git@code.example:2222/acme/app.git",
            Some("forgejo"),
            None,
            None,
            "t",
        )
        .unwrap();
        assert_eq!(c.api_url, "https://code.example/api/v1");
        let c = credential_for_remote(
            "https://ghe.example/acme/app",
            Some("github"),
            None,
            None,
            "t",
        )
        .unwrap();
        assert_eq!(c.api_url, "https://ghe.example/api/v3");
        // A host hangar does not know needs its kind; a local path its project.
        assert!(
            credential_for_remote("https://code.example/a/b", None, None, None, "t")
                .unwrap_err()
                .contains("--forge")
        );
        assert!(
            credential_for_remote(
                "/srv/git/app.git",
                Some("github"),
                Some("http://127.0.0.1:1"),
                None,
                "t"
            )
            .unwrap_err()
            .contains("--forge-project")
        );
        // What reaches a URL is checked as the server's credentials are.
        assert!(
            credential_for_remote(
                "/srv/git/app.git",
                Some("github"),
                Some("http://127.0.0.1:1"),
                Some("acme/../x"),
                "t"
            )
            .is_err()
        );
    }
}
