//! Webhook authentication and payload normalisation for GitHub, Gitea/Forgejo and
//! GitLab. Signatures are checked before the body is parsed, in constant time.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::workflows::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    Gitea,
    GitLab,
}

impl Forge {
    pub fn parse(s: &str) -> Option<Forge> {
        match s {
            "github" => Some(Forge::GitHub),
            "gitea" | "forgejo" => Some(Forge::Gitea),
            "gitlab" => Some(Forge::GitLab),
            _ => None,
        }
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn hmac_hex(secret: &str, body: &[u8]) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Checks the forge's signature header against `secret`.
pub fn verify(forge: Forge, headers: &HeaderMap, body: &[u8], secret: &str) -> bool {
    match forge {
        Forge::GitHub | Forge::Gitea => {
            let given = match forge {
                Forge::GitHub => {
                    header(headers, "x-hub-signature-256").and_then(|s| s.strip_prefix("sha256="))
                }
                _ => header(headers, "x-gitea-signature")
                    .or_else(|| header(headers, "x-forgejo-signature"))
                    .or_else(|| {
                        header(headers, "x-hub-signature-256")
                            .and_then(|s| s.strip_prefix("sha256="))
                    }),
            };
            let Some(given) = given.and_then(|g| hex::decode(g.trim()).ok()) else {
                return false;
            };
            let expected = hmac_hex(secret, body);
            given.len() == expected.len() && bool::from(given.ct_eq(&expected))
        }
        Forge::GitLab => {
            let Some(given) = header(headers, "x-gitlab-token") else {
                return false;
            };
            // Compare digests so the comparison time does not depend on the length either.
            let a = hmac_hex("hangar-gitlab", given.as_bytes());
            let b = hmac_hex("hangar-gitlab", secret.as_bytes());
            bool::from(a.ct_eq(&b))
        }
    }
}

pub struct Parsed {
    pub delivery_id: String,
    /// `None` for events hangar does not act on (ping, issues...): recorded, nothing queued.
    pub event: Option<Event>,
    pub event_name: String,
    pub repo_full_name: Option<String>,
}

fn s(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(Value::as_str).map(String::from)
}

/// Parses a verified body. Errors are messages for a 400 answer.
pub fn parse(forge: Forge, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, String> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| format!("the payload is not JSON: {e}"))?;
    if !payload.is_object() {
        return Err("the payload must be a JSON object".into());
    }
    let (event_name, delivery) = match forge {
        Forge::GitHub => (
            header(headers, "x-github-event"),
            header(headers, "x-github-delivery"),
        ),
        Forge::Gitea => (
            header(headers, "x-gitea-event")
                .or_else(|| header(headers, "x-forgejo-event"))
                .or_else(|| header(headers, "x-github-event")),
            header(headers, "x-gitea-delivery")
                .or_else(|| header(headers, "x-forgejo-delivery"))
                .or_else(|| header(headers, "x-github-delivery")),
        ),
        Forge::GitLab => (
            header(headers, "x-gitlab-event"),
            header(headers, "x-gitlab-event-uuid")
                .or_else(|| header(headers, "x-gitlab-webhook-uuid")),
        ),
    };
    let event_name = event_name
        .ok_or("the event header is missing (X-GitHub-Event, X-Gitea-Event or X-Gitlab-Event)")?;
    let delivery_id = match delivery {
        Some(d) if !d.is_empty() => d.to_string(),
        // No delivery id: the body's hash stands in, so exact redeliveries still de-duplicate.
        _ => format!("sha256:{}", hangar_store::crypto::sha256_hex(body)),
    };
    // The payload's clone URL is not read at all: the server fetches from the
    // URL the repository was registered with.
    let (event, full_name) = match forge {
        Forge::GitHub | Forge::Gitea => {
            let full = s(&payload, "/repository/full_name");
            let ev = match event_name {
                "push" => Some(github_push(&payload)?),
                "pull_request" => Some(github_pr(&payload)?),
                _ => None,
            };
            (ev, full)
        }
        Forge::GitLab => {
            let full = s(&payload, "/project/path_with_namespace");
            let ev = match event_name {
                "Push Hook" | "Tag Push Hook" => Some(gitlab_push(&payload)?),
                "Merge Request Hook" => Some(gitlab_mr(&payload)?),
                _ => None,
            };
            (ev, full)
        }
    };
    Ok(Parsed {
        delivery_id,
        event,
        event_name: event_name.to_string(),
        repo_full_name: full_name,
    })
}

/// A commit id from the payload: 40 or 64 hex characters, or the delivery is refused.
fn commit(p: &Value, ptr: &str, what: &str) -> Result<String, String> {
    let v = s(p, ptr).ok_or_else(|| format!("the payload has no {what}"))?;
    hangar_git::commit_id(what, &v)
        .map(str::to_string)
        .map_err(|e| e.to_string())
}

/// `before` may be absent, empty or zeros (a new branch); otherwise it is a commit id.
fn before(p: &Value) -> Result<String, String> {
    match s(p, "/before") {
        Some(b) if !b.is_empty() && !b.bytes().all(|c| c == b'0') => {
            commit(p, "/before", "`before`")
        }
        _ => Ok(String::new()),
    }
}

fn files_of(commits: Option<&Value>) -> Option<Vec<String>> {
    let commits = commits?.as_array()?;
    let mut files = Vec::new();
    for c in commits {
        for k in ["added", "modified", "removed"] {
            if let Some(a) = c.get(k).and_then(Value::as_array) {
                files.extend(a.iter().filter_map(|f| f.as_str().map(String::from)));
            }
        }
    }
    Some(files)
}

fn github_push(p: &Value) -> Result<Event, String> {
    let git_ref = s(p, "/ref").ok_or("push payload has no `ref`")?;
    s(p, "/after").ok_or("push payload has no `after` commit")?;
    let sha = commit(p, "/after", "`after`")?;
    Ok(Event {
        name: "push".into(),
        git_ref,
        deleted: p.get("deleted").and_then(Value::as_bool).unwrap_or(false)
            || sha.bytes().all(|b| b == b'0'),
        sha,
        before: before(p)?,
        changed_files: files_of(p.get("commits")).filter(|f| !f.is_empty()),
        actor: hangar_engine::context::event_actor(p).unwrap_or_default(),
        payload: p.clone(),
        ..Default::default()
    })
}

fn github_pr(p: &Value) -> Result<Event, String> {
    let number = p
        .pointer("/number")
        .or_else(|| p.pointer("/pull_request/number"))
        .and_then(Value::as_i64)
        .ok_or("pull_request payload has no `number`")?;
    Ok(Event {
        name: "pull_request".into(),
        git_ref: format!("refs/pull/{number}/head"),
        sha: commit(p, "/pull_request/head/sha", "`pull_request.head.sha`")?,
        base_ref: s(p, "/pull_request/base/ref"),
        action: s(p, "/action"),
        actor: s(p, "/sender/login").unwrap_or_default(),
        payload: p.clone(),
        ..Default::default()
    })
}

fn gitlab_push(p: &Value) -> Result<Event, String> {
    let git_ref = s(p, "/ref").ok_or("push payload has no `ref`")?;
    let sha = if s(p, "/checkout_sha").is_some() {
        commit(p, "/checkout_sha", "`checkout_sha`")?
    } else {
        commit(p, "/after", "`after`")?
    };
    Ok(Event {
        name: "push".into(),
        git_ref,
        deleted: sha.bytes().all(|b| b == b'0'),
        sha,
        before: before(p)?,
        changed_files: files_of(p.get("commits")).filter(|f| !f.is_empty()),
        actor: s(p, "/user_username").unwrap_or_default(),
        payload: p.clone(),
        ..Default::default()
    })
}

/// A GitLab merge request event (`Merge Request Hook`) as the `pull_request`
/// (and `pull_request_target`) event workflows read: `github.event` has
/// GitHub's keys (`action`, `number`, `pull_request`, `repository`,
/// `sender`) built from GitLab's documented fields, beside GitLab's own keys
/// (`object_attributes`, `project`, `user`, `changes`...), which stay as sent
/// (GitLab's deprecated `repository` gives way to GitHub's). The mapping is
/// documented in the README ("GitLab merge requests").
fn gitlab_mr(p: &Value) -> Result<Event, String> {
    let oa = p
        .get("object_attributes")
        .filter(|v| v.is_object())
        .ok_or("merge request payload has no `object_attributes`")?;
    let iid = oa
        .get("iid")
        .and_then(Value::as_i64)
        .ok_or("merge request payload has no `object_attributes.iid`")?;
    let sha = commit(
        p,
        "/object_attributes/last_commit/id",
        "merge request's last commit",
    )?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(String::from);
    // `update` is sent for new commits (with `oldrev`, the previous head)
    // and for edits of the title, labels, assignees (without): GitHub's
    // `synchronize` and `edited`. A merge closes the pull request.
    let new_commits = oa
        .get("oldrev")
        .and_then(Value::as_str)
        .is_some_and(|r| !r.is_empty());
    let action = match text(oa, "action").as_deref() {
        Some("open") | None => "opened".to_string(),
        Some("reopen") => "reopened".into(),
        Some("close") | Some("merge") => "closed".into(),
        Some("update") if new_commits => "synchronize".into(),
        Some("update") => "edited".into(),
        // approved, unapproved, approval, unapproval: no GitHub
        // `pull_request` action; kept as GitLab names them, so only a
        // workflow that lists them in `types` runs.
        Some(other) => other.to_string(),
    };
    // A merge request from another project is a fork's (the fork rule of
    // `app::untrusted`); a missing source project is one too.
    let source_id = oa.get("source_project_id").filter(|v| !v.is_null());
    let target_id = oa.get("target_project_id").filter(|v| !v.is_null());
    let fork = source_id.is_none() || source_id != target_id;
    let repo = |project: Option<&Value>, id: Option<&Value>, fork: bool| {
        let project = project.cloned().unwrap_or(Value::Null);
        let full = text(&project, "path_with_namespace");
        let owner = full
            .as_deref()
            .and_then(|f| f.rsplit_once('/'))
            .map(|(o, _)| o.to_string());
        json!({
            "id": id.cloned().or_else(|| project.get("id").cloned()),
            "name": full.as_deref().map(|f| f.rsplit('/').next().unwrap_or(f)),
            "full_name": full,
            "owner": {"login": owner},
            "html_url": text(&project, "web_url"),
            "clone_url": text(&project, "git_http_url"),
            "ssh_url": text(&project, "git_ssh_url"),
            "default_branch": text(&project, "default_branch"),
            "fork": fork,
        })
    };
    let state = match text(oa, "state").as_deref() {
        Some("opened") => "open",
        _ => "closed",
    };
    let labels: Vec<Value> = oa
        .get("labels")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l.get("title").and_then(Value::as_str))
                .map(|t| json!({"name": t}))
                .collect()
        })
        .unwrap_or_default();
    let user = p.get("user").cloned().unwrap_or(Value::Null);
    let mut pull_request = json!({
        "id": oa.get("id"),
        "number": iid,
        "title": text(oa, "title"),
        "body": text(oa, "description"),
        "state": state,
        "draft": oa.get("draft").and_then(Value::as_bool)
            .or_else(|| oa.get("work_in_progress").and_then(Value::as_bool))
            .unwrap_or(false),
        "merged": text(oa, "state").as_deref() == Some("merged")
            || text(oa, "action").as_deref() == Some("merge"),
        "html_url": text(oa, "url"),
        "created_at": oa.get("created_at"),
        "updated_at": oa.get("updated_at"),
        "labels": labels,
        // GitLab names the author by id only; `sender` is who acted.
        "user": {"id": oa.get("author_id")},
        "head": {
            "ref": text(oa, "source_branch"),
            "sha": sha,
            // A merge request within one project: its source is the project.
            "repo": repo(
                oa.get("source").or(if fork { None } else { p.get("project") }),
                source_id,
                fork,
            ),
        },
        "base": {
            "ref": text(oa, "target_branch"),
            "repo": repo(oa.get("target").or(p.get("project")), target_id, false),
        },
    });
    if oa.get("first_contribution").and_then(Value::as_bool) == Some(true) {
        pull_request["author_association"] = json!("FIRST_TIME_CONTRIBUTOR");
    }
    let mut payload = p.clone();
    let obj = payload
        .as_object_mut()
        .ok_or("the payload must be a JSON object")?;
    obj.insert("action".into(), json!(action));
    obj.insert("number".into(), json!(iid));
    obj.insert("pull_request".into(), pull_request);
    obj.insert(
        "repository".into(),
        repo(p.get("project"), target_id, false),
    );
    obj.insert(
        "sender".into(),
        json!({"login": text(&user, "username"), "id": user.get("id"), "name": text(&user, "name")}),
    );
    Ok(Event {
        name: "pull_request".into(),
        git_ref: format!("refs/merge-requests/{iid}/head"),
        sha,
        base_ref: text(oa, "target_branch"),
        action: Some(action),
        actor: text(&user, "username").unwrap_or_default(),
        payload,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn github_signature() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = format!("sha256={}", hex::encode(hmac_hex("s3cret", body)));
        assert!(verify(
            Forge::GitHub,
            &headers(&[("x-hub-signature-256", &sig)]),
            body,
            "s3cret"
        ));
        assert!(!verify(
            Forge::GitHub,
            &headers(&[("x-hub-signature-256", &sig)]),
            body,
            "other"
        ));
        assert!(!verify(
            Forge::GitHub,
            &headers(&[("x-hub-signature-256", "sha256=zz")]),
            body,
            "s3cret"
        ));
        assert!(!verify(Forge::GitHub, &headers(&[]), body, "s3cret"));
        let gitea = hex::encode(hmac_hex("s3cret", body));
        assert!(verify(
            Forge::Gitea,
            &headers(&[("x-gitea-signature", &gitea)]),
            body,
            "s3cret"
        ));
        assert!(verify(
            Forge::GitLab,
            &headers(&[("x-gitlab-token", "s3cret")]),
            body,
            "s3cret"
        ));
        assert!(!verify(
            Forge::GitLab,
            &headers(&[("x-gitlab-token", "s3cre")]),
            body,
            "s3cret"
        ));
    }

    #[test]
    fn malformed_payloads_explain_themselves() {
        let h = headers(&[("x-github-event", "push"), ("x-github-delivery", "1")]);
        assert!(
            parse(Forge::GitHub, &h, b"nope")
                .err()
                .unwrap()
                .contains("not JSON")
        );
        assert!(
            parse(Forge::GitHub, &h, b"{}")
                .err()
                .unwrap()
                .contains("no `ref`")
        );
        let p = parse(Forge::GitHub, &h, br#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567","commits":[{"added":["a"],"modified":["b"]}]}"#).unwrap();
        assert_eq!(p.event.unwrap().changed_files.unwrap(), vec!["a", "b"]);
    }
}
