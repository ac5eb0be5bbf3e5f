//! Tags on merge: a push to a repository's default branch that merges a
//! release prepared with `hangar release --pr` is tagged by the server, as
//! `hangar release` would tag it on that branch — when the repository's
//! hangar.yml at the pushed commit opts in with `release.tag_on_merge: true`.
//!
//! The merged release is found as `hangar release` finds it
//! (`hangar_release::pr::merged_release_at`: the `chore(release): vX.Y.Z`
//! commit in the pushed history that no tag contains, and the commit that
//! merged it), and its annotated tags get the changelog section as committed.
//! How they reach the repository (`release.tag_via`):
//! - `git` (the default): made in the mirror and pushed to the registered
//!   clone URL (a local one is tagged in place). Over https with the
//!   repository's forge token, or an installation token of its GitHub App
//!   (its own, or the server-wide one) minted for the push, given to git as
//!   `http.extraHeader` through `GIT_CONFIG_*` — its environment, never its
//!   command line — as actions/checkout does; git trusts the server's
//!   `--git-ca-file` when set, and verification is never turned off.
//! - `api`: created through the forge's API with that credential (GitHub
//!   `POST /repos/{o}/{r}/git/tags` then `POST …/git/refs`, Gitea/Forgejo
//!   `POST /repos/{o}/{r}/tags`, GitLab `POST /projects/:id/repository/tags`),
//!   each request sent once (a create that timed out may have happened).
//!   Chosen too when unset and the clone URL is ssh while the repository has
//!   a forge credential: a token cannot authenticate ssh.
//!
//! Once only: the tags are read from the clone URL before deciding, so a
//! redelivered webhook, the repository watcher and a later push all find the
//! release tagged, and one tagging at a time runs in the process. Each tag
//! made is audited (`release.tag`); a refusal is audited too
//! (`release.tag_failed`, with the forge's HTTP status), and nothing is left
//! behind, so the next push to the default branch tries again.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use hangar_git::Git;
use hangar_release::config::TagVia;
use hangar_release::pr::MergedTag;
use hangar_store::{ForgeCredential, Repo};
use serde_json::{Value, json};

use crate::app::App;
use crate::forge_status::{Forge, RetryPolicy, send};
use crate::github_checks::{ChecksCredential, Sent};
use crate::workflows::Event;

/// One tagging at a time: two deliveries of one push cannot both tag.
static TAGGING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Who the server's tags name as their tagger.
const TAGGER: (&str, &str) = ("hangar", "hangar@localhost");

/// Whether `event` is a push to the repository's default branch: the one the
/// payload names (GitHub and Gitea's `repository.default_branch`, GitLab's
/// `project.default_branch`), else `main` or `master`.
fn to_default_branch(event: &Event) -> bool {
    if event.name != "push" || event.deleted {
        return false;
    }
    let named = ["/repository/default_branch", "/project/default_branch"]
        .iter()
        .find_map(|p| event.payload.pointer(p).and_then(|v| v.as_str()));
    match named {
        Some(b) => event.git_ref.strip_prefix("refs/heads/") == Some(b),
        None => crate::app::default_branch_refs().contains(&event.git_ref.as_str()),
    }
}

/// After a push is queued: tags the release it merged, in the background
/// (the forge's webhook is answered first).
pub(crate) fn after_push(app: &Arc<App>, repo: &Repo, event: &Event, delivery: &str) {
    if !to_default_branch(event) || !hangar_git::is_commit_id(&event.sha) {
        return;
    }
    let (app, repo, sha, delivery) = (
        app.clone(),
        repo.clone(),
        event.sha.clone(),
        delivery.to_string(),
    );
    tokio::spawn(async move {
        match tag_merged(&app, &repo, &sha, &delivery).await {
            Ok(tags) if !tags.is_empty() => {
                tracing::info!(repo = %repo.name, "tagged {} on the merge of its release", tags.join(", "));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(repo = %repo.name, "tagging the release merged in {sha}: {e:#}")
            }
        }
    });
}

/// Tags the untagged release merged in `sha`'s history, if hangar.yml opts
/// in; returns the tags made.
pub(crate) async fn tag_merged(
    app: &App,
    repo: &Repo,
    sha: &str,
    delivery: &str,
) -> anyhow::Result<Vec<String>> {
    let _one = TAGGING.lock().await;
    let mut text = None;
    for name in ["hangar.yml", "hangar.yaml"] {
        text = app.git.file_at(&repo.clone_url, sha, name).await?;
        if text.is_some() {
            break;
        }
    }
    let Some(text) = text else {
        return Ok(vec![]);
    };
    // An invalid release section tags nothing: `hangar release` would refuse it too.
    let config = hangar_release::Config::parse("hangar.yml", &text)
        .with_context(|| format!("hangar.yml at {sha}: no release is tagged until it is fixed"))?;
    if !config.tag_on_merge {
        return Ok(vec![]);
    }
    let local = crate::git::local_path(&repo.clone_url).is_some();
    let tag_via = config.tag_via;
    let dir = app.git.repo_with_tags(&repo.clone_url, sha).await?;
    let (dir2, sha2) = (dir.clone(), sha.to_string());
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let Some(merged) = hangar_release::pr::merged_release_at(&dir2, &sha2)? else {
            return Ok(None);
        };
        let tags = hangar_release::pr::merged_tags(&dir2, &config, &merged)?;
        Ok(Some((merged, tags)))
    })
    .await??;
    let Some((merged, tags)) = found else {
        return Ok(vec![]);
    };
    let url = repo.clone_url.as_str();
    let stored = app.store.forge_credential(repo.id)?;
    let has_credential = stored.is_some()
        || crate::forge_status::server_app_credential(&app.store, repo.id).is_some();
    let via = match tag_via {
        Some(v) => v,
        None if !local && !is_web_url(url) && has_credential => TagVia::Api,
        None => TagVia::Git,
    };
    let mut sent = Vec::new();
    let result = match via {
        TagVia::Git => tag_with_git(app, repo, &dir, &merged.commit, &tags, local, &mut sent).await,
        TagVia::Api => tag_with_api(app, repo, &merged.commit, &tags, &mut sent).await,
    };
    record(app, repo, sent);
    if let Err(f) = result {
        app.store.audit(
            "hangar",
            "release.tag_failed",
            &format!("repo/{}", repo.id),
            &json!({
                "tags": tags.iter().map(|t| &t.tag).collect::<Vec<_>>(),
                "commit": merged.commit,
                "via": if via == TagVia::Api { "api" } else { "git" },
                "http_status": f.http_status,
                "error": f.message,
                "delivery": delivery,
            }),
        )?;
        anyhow::bail!("{}", f.message);
    }
    let made: Vec<String> = tags.iter().map(|t| t.tag.clone()).collect();
    for t in &tags {
        app.store.audit(
            "hangar",
            "release.tag",
            &format!("repo/{}", repo.id),
            &json!({
                "tag": t.tag,
                "version": t.version,
                "commit": merged.commit,
                "release_commit": merged.release_commit,
                "via": if via == TagVia::Api { "api" } else { "git" },
                "delivery": delivery,
            }),
        )?;
    }
    Ok(made)
}

/// Why the tags were not written: the forge's HTTP status when it answered,
/// and what to tell people (never a token).
#[derive(Debug)]
struct Failed {
    http_status: Option<u16>,
    message: String,
}

impl Failed {
    fn new(message: impl Into<String>) -> Failed {
        Failed {
            http_status: None,
            message: message.into(),
        }
    }
}

/// An https (or http) URL: the transports a token authenticates.
fn is_web_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// The credential the tags are written with: the repository's forge token
/// as stored, or an installation token minted now for its GitHub App (its
/// own App credential, else the server-wide App when installed there).
/// `None` when the repository has neither.
async fn write_credential(
    app: &App,
    repo: &Repo,
    sent: &mut Vec<Sent>,
) -> Result<Option<ForgeCredential>, Failed> {
    let stored = app
        .store
        .forge_credential(repo.id)
        .map_err(|e| Failed::new(format!("reading the forge credential: {e:#}")))?;
    let Some(cred) =
        stored.or_else(|| crate::forge_status::server_app_credential(&app.store, repo.id))
    else {
        return Ok(None);
    };
    let Some(checks) = ChecksCredential::decode(&cred.token) else {
        return Ok(Some(cred));
    };
    let api = cred.api_url.trim_end_matches('/').to_string();
    let from = sent.len();
    match app
        .forge
        .installation_token(&api, &cred, &checks, sent)
        .await
    {
        Some((token, _)) => Ok(Some(ForgeCredential { token, ..cred })),
        None => {
            let last = sent[from..].last();
            Err(Failed {
                http_status: last.and_then(|s| s.out.http_status),
                message: format!(
                    "the GitHub App gave no installation token for {}: {}",
                    cred.project,
                    last.and_then(|s| s.out.error.clone())
                        .unwrap_or_else(|| "it is not installed there".into())
                ),
            })
        }
    }
}

/// `release.tag_via: git`: the tags made in the mirror, pushed to the clone
/// URL (a local repository is tagged in place). Nothing is left in the
/// mirror when the push fails: the next push must find the release untagged.
async fn tag_with_git(
    app: &App,
    repo: &Repo,
    dir: &Path,
    commit: &str,
    tags: &[MergedTag],
    local: bool,
    sent: &mut Vec<Sent>,
) -> Result<(), Failed> {
    let mut made = Vec::new();
    for t in tags {
        if let Err(e) = hangar_release::pr::annotated_tag(dir, &t.tag, commit, &t.message)
            .env("GIT_COMMITTER_NAME", TAGGER.0)
            .env("GIT_COMMITTER_EMAIL", TAGGER.1)
            .output_async()
            .await
        {
            drop_tags(dir, &made).await;
            return Err(Failed::new(format!("tagging {} on {commit}: {e:#}", t.tag)));
        }
        made.push(t.tag.clone());
    }
    if local {
        return Ok(());
    }
    let cred = if repo.clone_url.starts_with("https://") {
        match write_credential(app, repo, sent).await {
            Ok(c) => c,
            Err(f) => {
                drop_tags(dir, &made).await;
                return Err(f);
            }
        }
    } else {
        None
    };
    let pushed = push_tags(app, dir, &repo.clone_url, cred.as_ref(), &made).await;
    if pushed.is_err() {
        drop_tags(dir, &made).await;
    }
    pushed
}

async fn drop_tags(dir: &Path, tags: &[String]) {
    if tags.is_empty() {
        return;
    }
    let _ = Git::new(dir)
        .args(&["tag", "-d"])
        .values(tags)
        .output_async()
        .await;
}

/// Pushes `tags` from the mirror `dir` to the clone URL; over https with the
/// token as the password git's HTTP transport sends (in the environment,
/// never on the command line), and no credential helper of the server's
/// user consulted.
async fn push_tags(
    app: &App,
    dir: &Path,
    clone_url: &str,
    cred: Option<&ForgeCredential>,
    tags: &[String],
) -> Result<(), Failed> {
    let mut git = app.git.remote_git(dir);
    if let Some(header) = cred.and_then(|c| auth_header(clone_url, c)) {
        git = git
            .env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", header)
            .env("GIT_CONFIG_KEY_1", "credential.helper")
            .env("GIT_CONFIG_VALUE_1", "");
    }
    let out = git
        .args(&["push", "-q"])
        .value(clone_url)
        .values(tags.iter().map(|t| format!("refs/tags/{t}:refs/tags/{t}")))
        .run_async()
        .await;
    let Err(e) = out else {
        return Ok(());
    };
    let mut text = format!("{e:#}");
    if let Some(c) = cred {
        text = text.replace(&c.token, "***");
    }
    let http_status = git_http_status(&text);
    let why = match http_status {
        Some(401) => "the forge refused the credential (HTTP 401): a token that may push tags is needed (PUT /api/v1/repos/{id}/forge)".to_string(),
        Some(403) => "the forge forbade the push (HTTP 403): the token may not push tags to this repository".to_string(),
        Some(code) => format!("the forge answered HTTP {code}"),
        None => "the push failed".to_string(),
    };
    Err(Failed {
        http_status,
        message: format!("pushing {} to {clone_url}: {why}: {text}", tags.join(", ")),
    })
}

/// The HTTP status a failed git push over https met, from git's words: it
/// names other errors (`The requested URL returned error: 403`), and asks
/// for a user name or says `Authentication failed` only after a 401.
fn git_http_status(stderr: &str) -> Option<u16> {
    if let Some(i) = stderr.find("returned error: ") {
        let code: String = stderr[i + 16..].chars().take(3).collect();
        if let Ok(c) = code.parse() {
            return Some(c);
        }
    }
    [
        "Authentication failed",
        "could not read Username",
        "could not read Password",
    ]
    .iter()
    .any(|m| stderr.contains(m))
    .then_some(401)
}

/// The `Authorization` header git sends to an https forge: Basic, with the
/// user name each forge documents for a token (`x-access-token` on GitHub,
/// `oauth2` on GitLab and Gitea). None for another transport.
fn auth_header(clone_url: &str, cred: &ForgeCredential) -> Option<String> {
    if !clone_url.starts_with("https://") || ChecksCredential::decode(&cred.token).is_some() {
        return None;
    }
    let user = match Forge::parse(&cred.kind)? {
        Forge::GitHub => "x-access-token",
        _ => "oauth2",
    };
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", cred.token));
    Some(format!("Authorization: Basic {basic}"))
}

/// `release.tag_via: api`: each tag created through the forge's API, every
/// request sent once (a create that timed out may have happened; the next
/// push reads the tags again before deciding).
async fn tag_with_api(
    app: &App,
    repo: &Repo,
    commit: &str,
    tags: &[MergedTag],
    sent: &mut Vec<Sent>,
) -> Result<(), Failed> {
    let Some(cred) = write_credential(app, repo, sent).await? else {
        return Err(Failed::new(
            "release.tag_via is api, but the repository has no forge credential: set one (PUT /api/v1/repos/{id}/forge) or use tag_via: git",
        ));
    };
    let forge = Forge::parse(&cred.kind)
        .ok_or_else(|| Failed::new(format!("unknown forge `{}`", cred.kind)))?;
    let api = cred.api_url.trim_end_matches('/');
    let headers = forge.headers(&cred.token);
    let once = RetryPolicy {
        attempts: 1,
        ..app.forge.policy.clone()
    };
    for t in tags {
        let message = t.message.trim_end().to_string();
        let steps: Vec<(String, Value)> = match forge {
            Forge::GitHub => vec![(
                format!("{api}/repos/{}/git/tags", cred.project),
                json!({
                    "tag": t.tag,
                    "message": message,
                    "object": commit,
                    "type": "commit",
                    "tagger": {
                        "name": TAGGER.0,
                        "email": TAGGER.1,
                        "date": crate::github_checks::iso8601(hangar_store::now_ms()),
                    },
                }),
            )],
            Forge::Gitea => vec![(
                format!("{api}/repos/{}/tags", cred.project),
                json!({"tag_name": t.tag, "target": commit, "message": message}),
            )],
            Forge::GitLab => vec![(
                format!(
                    "{api}/projects/{}/repository/tags",
                    cred.project.replace('/', "%2F")
                ),
                json!({"tag_name": t.tag, "ref": commit, "message": message}),
            )],
        };
        for (url, body) in steps {
            let answer = post_once(app, &once, &url, &headers, &body, &t.tag, sent).await?;
            if forge == Forge::GitHub {
                // The tag object exists; the ref makes it the tag.
                let sha = answer
                    .as_ref()
                    .and_then(|a| a["sha"].as_str())
                    .filter(|s| hangar_git::is_commit_id(s))
                    .ok_or_else(|| {
                        Failed::new(format!(
                            "GitHub created the tag object of {} without answering its id",
                            t.tag
                        ))
                    })?
                    .to_string();
                let refs = format!("{api}/repos/{}/git/refs", cred.project);
                let body = json!({"ref": format!("refs/tags/{}", t.tag), "sha": sha});
                post_once(app, &once, &refs, &headers, &body, &t.tag, sent).await?;
            }
        }
    }
    Ok(())
}

/// One POST to the forge, recorded in `sent`; a refusal carries its status.
async fn post_once(
    app: &App,
    policy: &RetryPolicy,
    url: &str,
    headers: &[(&'static str, String)],
    body: &Value,
    tag: &str,
    sent: &mut Vec<Sent>,
) -> Result<Option<Value>, Failed> {
    let bytes = serde_json::to_vec(body).map_err(|e| Failed::new(e.to_string()))?;
    let (out, answer) = send(
        &app.forge.client,
        policy,
        reqwest::Method::POST,
        url,
        headers,
        Some(&bytes),
    )
    .await;
    let failed = (out.outcome != "delivered").then(|| Failed {
        http_status: out.http_status,
        message: format!(
            "creating the tag {tag} through {url}: {}",
            out.error.as_deref().unwrap_or(out.outcome)
        ),
    });
    sent.push(Sent {
        target: url.to_string(),
        subject: tag.to_string(),
        state: "tag".into(),
        out,
    });
    match failed {
        Some(f) => Err(f),
        None => Ok(answer),
    }
}

/// The forge requests of one tagging, in the outbound log.
fn record(app: &App, repo: &Repo, sent: Vec<Sent>) {
    for s in sent {
        let _ = app
            .store
            .record_outbound(&s.outbound("release-tag", repo.id, None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pushes_to_the_default_branch_are_looked_at() {
        let ev = |git_ref: &str, payload: serde_json::Value| Event {
            name: "push".into(),
            git_ref: git_ref.into(),
            payload,
            ..Default::default()
        };
        assert!(to_default_branch(&ev(
            "refs/heads/main",
            serde_json::json!({})
        )));
        assert!(!to_default_branch(&ev(
            "refs/heads/release/v1.0.0",
            serde_json::json!({})
        )));
        let trunk = serde_json::json!({"repository": {"default_branch": "trunk"}});
        assert!(to_default_branch(&ev("refs/heads/trunk", trunk.clone())));
        assert!(!to_default_branch(&ev("refs/heads/main", trunk)));
        assert!(!to_default_branch(&ev(
            "refs/tags/v1.0.0",
            serde_json::json!({})
        )));
    }

    #[test]
    fn the_token_goes_in_a_header_for_https_only() {
        let cred = |kind: &str| ForgeCredential {
            kind: kind.into(),
            api_url: "https://api.github.com".into(),
            project: "acme/app".into(),
            token: "t0ken".into(),
        };
        let h = auth_header("https://github.com/acme/app.git", &cred("github")).unwrap();
        let b = base64::engine::general_purpose::STANDARD
            .decode(h.strip_prefix("Authorization: Basic ").unwrap())
            .unwrap();
        assert_eq!(b, b"x-access-token:t0ken");
        let h = auth_header("https://gitlab.com/acme/app.git", &cred("gitlab")).unwrap();
        assert!(h.starts_with("Authorization: Basic "));
        assert_eq!(
            auth_header("git@github.com:acme/app.git", &cred("github")),
            None
        );
    }
}
