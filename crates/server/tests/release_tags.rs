//! The server tags a release when the push to the default branch merges it:
//! a real server, real repositories (the registered clone URL is a bare
//! repository, pushed to as a forge's would be), the release prepared by
//! `hangar release --pr`'s own code and merged with git.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// [`merged_release_into`] a new bare repository: (work tree, bare, merge commit).
fn merged_release(
    hangar_yml: &str,
    later_yml: Option<&str>,
) -> (tempfile::TempDir, tempfile::TempDir, String) {
    let bare = tempfile::tempdir().unwrap();
    git(bare.path(), &["init", "-q", "--bare", "-b", "main"]);
    let (work, merge) = merged_release_into(bare.path(), hangar_yml, later_yml);
    (work, bare, merge)
}

async fn release_audits(s: &TestServer) -> Vec<serde_json::Value> {
    audits(s, "release.tag").await
}

const OPT_IN: &str = "release:\n  tag_on_merge: true\n";

#[tokio::test]
async fn the_push_that_merges_a_release_tags_it_once() {
    let s = start().await;

    // Not opted in: the merge is left for `hangar release` to tag.
    let (_w0, plain, merge0) = merged_release("release:\n  changelog: CHANGELOG.md\n", None);
    s.register("acme/plain", plain.path()).await;
    let (code, v) = s.push("acme/plain", plain.path(), &merge0, "p-1").await;
    assert!(code == 202 || code == 200, "{code} {v}");

    let (_work, bare, merge) = merged_release(OPT_IN, None);
    let id = s.register("acme/app", bare.path()).await;
    let (code, v) = s.push("acme/app", bare.path(), &merge, "d-1").await;
    assert_eq!(code, 202, "{v}");
    let start = Instant::now();
    let tag = loop {
        if let Some(t) = tag_of(bare.path(), "v1.1.0") {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "v1.1.0 was not tagged: {:#}",
            s.get("/api/v1/audit").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let b = bare.path();
    // An annotated tag on the merge commit, by hangar, with the notes.
    assert_eq!(git(b, &["cat-file", "-t", "v1.1.0"]).trim(), "tag");
    assert_eq!(git(b, &["rev-list", "-n", "1", "v1.1.0"]).trim(), merge);
    let body = git(b, &["cat-file", "tag", "v1.1.0"]);
    assert!(body.contains("tagger hangar <hangar@localhost>"), "{body}");
    assert!(body.contains("a feature"), "{body}");
    assert!(
        !body.contains("another change"),
        "only the prepared notes: {body}"
    );
    // Audited once the tag is made (it can be seen a moment before).
    eventually("the tag audited", || async {
        release_audits(&s).await.len() == 1
    })
    .await;
    let audits = release_audits(&s).await;
    assert_eq!(audits[0]["target"], format!("repo/{id}"));
    assert_eq!(audits[0]["detail"]["tag"], "v1.1.0");
    assert_eq!(audits[0]["detail"]["commit"], merge);

    // The forge redelivers the webhook, and another delivery of the same
    // push comes in (a second hook, the watcher): no second tag.
    let (code, v) = s.push("acme/app", b, &merge, "d-1").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["duplicate"], true, "{v}");
    let (code, v) = s.push("acme/app", b, &merge, "d-2").await;
    assert_eq!(code, 202, "{v}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tag_of(b, "v1.1.0").as_deref(), Some(tag.as_str()));
    assert_eq!(release_audits(&s).await.len(), 1);

    // The repository that did not opt in has no tag.
    assert_eq!(tag_of(plain.path(), "v1.1.0"), None);
    s.server.stop().await;
}

#[tokio::test]
async fn an_invalid_release_setting_tags_nothing() {
    let s = start().await;
    // Valid when the release was prepared, then broken on main.
    let (_work, bare, merge) =
        merged_release(OPT_IN, Some("release:\n  tag_on_merge: yes please\n"));
    s.register("acme/typo", bare.path()).await;
    let (code, v) = s.push("acme/typo", bare.path(), &merge, "t-1").await;
    assert_eq!(code, 202, "{v}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tag_of(bare.path(), "v1.1.0"), None);
    assert!(release_audits(&s).await.is_empty());
    s.server.stop().await;
}

/// A push webhook for a repository registered with an https clone URL.
async fn push_url(s: &TestServer, repo: &str, url: &str, sha: &str, delivery: &str) {
    let (code, v) = s.push(repo, Path::new(url), sha, delivery).await;
    assert!(code == 202 || code == 200, "{code} {v}");
}

#[tokio::test]
async fn an_https_clone_url_gets_the_tag_pushed_with_the_token_in_gits_environment() {
    let Some(forge) = hangar_testkit::git_https::git_https("ghp-push-t0ken") else {
        return;
    };
    let ca = forge.ca().to_path_buf();
    let s = start_with(|cfg| cfg.git_ca_file = Some(ca)).await;

    // The token the forge takes: tagged, pushed over TLS with it.
    let bare = forge.bare("acme/app.git");
    let (_work, merge) = merged_release_into(&bare, OPT_IN, None);
    let url = forge.url("acme/app.git");
    let id = register_url(&s, "acme/app", &url).await;
    let cred = json!({"kind": "github", "api_url": "https://api.github.com", "project": "acme/app", "token": "ghp-push-t0ken"});
    let (code, v) = put_forge_credential(&s, id, cred).await;
    assert!(code < 300, "{code} {v}");
    push_url(&s, "acme/app", &url, &merge, "h-1").await;
    eventually("v1.1.0 pushed over https", || async {
        tag_of(&bare, "v1.1.0").is_some()
    })
    .await;
    assert_eq!(git(&bare, &["rev-list", "-n", "1", "v1.1.0"]).trim(), merge);
    assert_eq!(git(&bare, &["cat-file", "-t", "v1.1.0"]).trim(), "tag");
    let seen = forge.seen();
    let pushes = seen.pushes();
    assert_eq!(pushes.len(), 1, "{seen:#?}");
    assert_eq!(pushes[0].status, 200);
    assert!(pushes[0].authenticated);
    assert_eq!(pushes[0].user.as_deref(), Some("x-access-token"));
    // While git pushed, no process had the token on its command line.
    assert!(seen.token_on_argv.is_empty(), "{:#?}", seen.token_on_argv);
    // Audited once the push returned (the tag can be seen a moment before).
    eventually("the tag audited", || async {
        release_audits(&s).await.len() == 1
    })
    .await;
    let tagged = release_audits(&s).await;
    assert_eq!(tagged[0]["detail"]["via"], "git");

    // A token the forge refuses: nothing is tagged, the refusal is audited
    // with the forge's status, the token is in no message.
    let bare2 = forge.bare("acme/wrong.git");
    let (_work2, merge2) = merged_release_into(&bare2, OPT_IN, None);
    let url2 = forge.url("acme/wrong.git");
    let id2 = register_url(&s, "acme/wrong", &url2).await;
    let cred = json!({"kind": "github", "api_url": "https://api.github.com", "project": "acme/wrong", "token": "ghp-expired-t0ken"}); // hangar:allow (a fake credential for the test)
    put_forge_credential(&s, id2, cred).await;
    push_url(&s, "acme/wrong", &url2, &merge2, "h-2").await;
    eventually("the refusal audited", || async {
        !audits(&s, "release.tag_failed").await.is_empty()
    })
    .await;
    let failed = audits(&s, "release.tag_failed").await;
    assert_eq!(failed[0]["target"], format!("repo/{id2}"));
    assert_eq!(failed[0]["detail"]["http_status"], 401, "{failed:#?}");
    assert_eq!(failed[0]["detail"]["tags"], json!(["v1.1.0"]));
    let error = failed[0]["detail"]["error"].as_str().unwrap();
    assert!(error.contains("refused the credential"), "{error}");
    assert!(
        !json!(failed).to_string().contains("ghp-expired-t0ken"),
        "{failed:#?}"
    );
    assert_eq!(tag_of(&bare2, "v1.1.0"), None);
    let refused: Vec<_> = forge
        .seen()
        .requests
        .into_iter()
        .filter(|r| r.target.contains("acme/wrong.git") && r.status == 401)
        .collect();
    assert!(!refused.is_empty());
    assert!(forge.seen().token_on_argv.is_empty());
    assert_eq!(release_audits(&s).await.len(), 1);
    s.server.stop().await;

    // A server that does not trust the forge's CA never pushes: git's
    // verification stays on.
    let s = start().await;
    let bare3 = forge.bare("acme/untrusted.git");
    let (_work3, merge3) = merged_release_into(&bare3, OPT_IN, None);
    let url3 = forge.url("acme/untrusted.git");
    let id3 = register_url(&s, "acme/untrusted", &url3).await;
    let cred = json!({"kind": "github", "api_url": "https://api.github.com", "project": "acme/untrusted", "token": "ghp-push-t0ken"});
    put_forge_credential(&s, id3, cred).await;
    // The webhook cannot even be read: git refused the forge's certificate.
    let (code, v) = s
        .push("acme/untrusted", Path::new(&url3), &merge3, "h-3")
        .await;
    assert_eq!(code, 422, "{v}");
    assert!(
        v.to_string().contains("certificate verification failed"),
        "{v}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tag_of(&bare3, "v1.1.0"), None);
    assert!(
        !forge
            .seen()
            .requests
            .iter()
            .any(|r| r.target.contains("acme/untrusted.git")),
        "no request got through TLS"
    );
    s.server.stop().await;
}

// ---------------------------------------------------------------------------
// Tags through the forge's API (`release.tag_via: api`).
// ---------------------------------------------------------------------------

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

#[derive(Default)]
struct TagForge {
    /// project → the bare repository its tags are made in.
    remotes: HashMap<String, PathBuf>,
    /// GitHub's tag objects: sha → (tag, message, commit).
    objects: HashMap<String, (String, String, String)>,
    /// (method, path) of every request.
    requests: Vec<(String, String)>,
    violations: Vec<String>,
    /// Projects whose token may not write tags (403).
    forbidden: Vec<String>,
}

type Tags = Arc<Mutex<TagForge>>;

/// Makes the annotated tag in the project's bare repository, as the forge would.
fn make_tag(bare: &Path, tag: &str, commit: &str, message: &str) -> Result<(), String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(bare)
        .args([
            "-c",
            "user.name=forge",
            "-c",
            "user.email=forge@example",
            "tag",
            "-a",
            "-m",
        ])
        .arg(message)
        .arg("--end-of-options")
        .arg(tag)
        .arg(commit)
        .output()
        .unwrap();
    out.status
        .success()
        .then_some(())
        .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

/// GitHub's, Gitea's and GitLab's documented tag endpoints, checking what
/// they are sent: the auth header, the fields, a commit that exists, a tag
/// that does not.
async fn tag_forge(
    State(c): State<Tags>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_string();
    let hdr = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut g = c.lock().unwrap();
    g.requests.push((method.to_string(), path.clone()));
    let (forge, project, endpoint) = if let Some(r) = path.strip_prefix("/github/repos/") {
        let mut p = r.splitn(3, '/');
        let (o, n, rest) = (
            p.next().unwrap_or(""),
            p.next().unwrap_or(""),
            p.next().unwrap_or(""),
        );
        ("github", format!("{o}/{n}"), rest.to_string())
    } else if let Some(r) = path.strip_prefix("/gitea/api/v1/repos/") {
        let mut p = r.splitn(3, '/');
        let (o, n, rest) = (
            p.next().unwrap_or(""),
            p.next().unwrap_or(""),
            p.next().unwrap_or(""),
        );
        ("gitea", format!("{o}/{n}"), rest.to_string())
    } else if let Some(r) = path.strip_prefix("/gitlab/api/v4/projects/") {
        let Some((id, rest)) = r.split_once('/') else {
            return (StatusCode::NOT_FOUND, "{}".into());
        };
        if !id.contains("%2F") {
            g.violations
                .push(format!("{path}: project path not encoded"));
        }
        ("gitlab", id.replace("%2F", "/"), rest.to_string())
    } else {
        return (StatusCode::NOT_FOUND, format!("no route {path}"));
    };
    let auth_ok = match forge {
        "github" => {
            hdr("authorization") == "Bearer gh-token"
                && hdr("accept") == "application/vnd.github+json"
        }
        "gitea" => hdr("authorization") == "token gt-token",
        _ => hdr("private-token") == "gl-token",
    };
    if !auth_ok {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials"}).to_string(),
        );
    }
    if method != Method::POST {
        g.violations.push(format!("{method} {path}"));
        return (StatusCode::METHOD_NOT_ALLOWED, "{}".into());
    }
    if g.forbidden.contains(&project) {
        return (
            StatusCode::FORBIDDEN,
            json!({"message": "Resource not accessible by integration"}).to_string(),
        );
    }
    let Some(bare) = g.remotes.get(&project).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found"}).to_string(),
        );
    };
    let Ok(b) = serde_json::from_slice::<Value>(&body) else {
        g.violations.push(format!("{path}: not JSON"));
        return (StatusCode::BAD_REQUEST, "{}".into());
    };
    let s = |k: &str| b[k].as_str().map(String::from);
    let exists = |tag: &str| tag_of(&bare, tag).is_some();
    let bad = |g: &mut TagForge, code: StatusCode, why: String| {
        g.violations.push(format!("{path}: {why}"));
        (code, json!({"message": why}).to_string())
    };
    match (forge, endpoint.as_str()) {
        ("github", "git/tags") => {
            let (Some(tag), Some(message), Some(object)) = (s("tag"), s("message"), s("object"))
            else {
                return bad(
                    &mut g,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("fields: {b}"),
                );
            };
            if b["type"] != "commit"
                || b.pointer("/tagger/name").and_then(Value::as_str).is_none()
                || b.pointer("/tagger/email").and_then(Value::as_str).is_none()
                || !b
                    .pointer("/tagger/date")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d.ends_with('Z'))
            {
                return bad(
                    &mut g,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("type/tagger: {b}"),
                );
            }
            if git(&bare, &["cat-file", "-t", &object]).trim() != "commit" {
                return bad(
                    &mut g,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("no commit {object}"),
                );
            }
            let sha = format!("{:040x}", g.objects.len() + 0xabc);
            g.objects
                .insert(sha.clone(), (tag.clone(), message, object));
            (
                StatusCode::CREATED,
                json!({"sha": sha, "tag": tag}).to_string(),
            )
        }
        ("github", "git/refs") => {
            let (Some(r), Some(sha)) = (s("ref"), s("sha")) else {
                return bad(
                    &mut g,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("fields: {b}"),
                );
            };
            let Some((tag, message, object)) = g.objects.get(&sha).cloned() else {
                return bad(
                    &mut g,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("no object {sha}"),
                );
            };
            if r != format!("refs/tags/{tag}") {
                return bad(
                    &mut g,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("ref {r} for tag {tag}"),
                );
            }
            if exists(&tag) {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Reference already exists"}).to_string(),
                );
            }
            make_tag(&bare, &tag, &object, &message).unwrap();
            (
                StatusCode::CREATED,
                json!({"ref": r, "object": {"sha": sha, "type": "tag"}}).to_string(),
            )
        }
        ("gitea", "tags") | ("gitlab", "repository/tags") => {
            let target_key = if forge == "gitea" { "target" } else { "ref" };
            let (Some(tag), Some(target), Some(message)) =
                (s("tag_name"), s(target_key), s("message"))
            else {
                return bad(
                    &mut g,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("fields: {b}"),
                );
            };
            if message.is_empty() {
                return bad(
                    &mut g,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "a lightweight tag".into(),
                );
            }
            if exists(&tag) {
                let code = if forge == "gitea" {
                    StatusCode::CONFLICT
                } else {
                    StatusCode::BAD_REQUEST
                };
                return (
                    code,
                    json!({"message": format!("Tag {tag} already exists")}).to_string(),
                );
            }
            make_tag(&bare, &tag, &target, &message).unwrap();
            (StatusCode::CREATED, json!({"name": tag}).to_string())
        }
        _ => bad(&mut g, StatusCode::NOT_FOUND, "no such route".into()),
    }
}

async fn tag_forge_server() -> (String, Tags) {
    let shared: Tags = Default::default();
    let app = axum::Router::new()
        .fallback(tag_forge)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), shared)
}

const VIA_API: &str = "release:\n  tag_on_merge: true\n  tag_via: api\n";

#[tokio::test]
async fn tag_via_api_creates_the_tag_on_each_forge_once() {
    let (forge, c) = tag_forge_server().await;
    let s = start().await;
    let mut keep = Vec::new();
    for (kind, api, token, project) in [
        ("github", format!("{forge}/github"), "gh-token", "acme/gh"),
        (
            "gitea",
            format!("{forge}/gitea/api/v1"),
            "gt-token",
            "acme/gt",
        ),
        (
            "gitlab",
            format!("{forge}/gitlab/api/v4"),
            "gl-token",
            "group/gl",
        ),
    ] {
        let (work, bare, merge) = merged_release(VIA_API, None);
        c.lock()
            .unwrap()
            .remotes
            .insert(project.into(), bare.path().into());
        let id = s.register(project, bare.path()).await;
        let (code, v) = put_forge_credential(
            &s,
            id,
            json!({"kind": kind, "api_url": api, "project": project, "token": token}),
        )
        .await;
        assert!(code < 300, "{code} {v}");
        let (code, v) = s
            .push(project, bare.path(), &merge, &format!("{kind}-1"))
            .await;
        assert_eq!(code, 202, "{v}");
        let b = bare.path().to_path_buf();
        eventually(&format!("{kind}: v1.1.0 created through the API"), || {
            let b = b.clone();
            async move { tag_of(&b, "v1.1.0").is_some() }
        })
        .await;
        assert_eq!(git(&b, &["rev-list", "-n", "1", "v1.1.0"]).trim(), merge);
        assert_eq!(git(&b, &["cat-file", "-t", "v1.1.0"]).trim(), "tag");
        let body = git(&b, &["cat-file", "tag", "v1.1.0"]);
        assert!(body.contains("a feature"), "{kind}: {body}");
        // Another delivery of the push: the tag is read first, nothing sent.
        let sent = c.lock().unwrap().requests.len();
        let (code, v) = s
            .push(project, bare.path(), &merge, &format!("{kind}-2"))
            .await;
        assert_eq!(code, 202, "{v}");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            c.lock().unwrap().requests.len(),
            sent,
            "{kind}: asked again"
        );
        keep.push((work, bare));
    }
    {
        let g = c.lock().unwrap();
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
        let asked: Vec<&str> = g.requests.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(
            asked,
            [
                "/github/repos/acme/gh/git/tags",
                "/github/repos/acme/gh/git/refs",
                "/gitea/api/v1/repos/acme/gt/tags",
                "/gitlab/api/v4/projects/group%2Fgl/repository/tags",
            ]
        );
    }
    eventually("three tags audited", || async {
        release_audits(&s).await.len() == 3
    })
    .await;
    let tagged = release_audits(&s).await;
    assert!(tagged.iter().all(|a| a["detail"]["via"] == "api"));

    // A token that may not write tags: one request (no retry on a 4xx), the
    // forge's status audited, no tag.
    let (_work, bare, merge) = merged_release(VIA_API, None);
    {
        let mut g = c.lock().unwrap();
        g.remotes.insert("acme/ro".into(), bare.path().into());
        g.forbidden.push("acme/ro".into());
    }
    let id = s.register("acme/ro", bare.path()).await;
    put_forge_credential(
        &s,
        id,
        json!({"kind": "gitea", "api_url": format!("{forge}/gitea/api/v1"), "project": "acme/ro", "token": "gt-token"}),
    )
    .await;
    let before = c.lock().unwrap().requests.len();
    s.push("acme/ro", bare.path(), &merge, "ro-1").await;
    eventually("the refusal audited", || async {
        !audits(&s, "release.tag_failed").await.is_empty()
    })
    .await;
    let failed = audits(&s, "release.tag_failed").await;
    assert_eq!(failed[0]["detail"]["http_status"], 403, "{failed:#?}");
    assert_eq!(failed[0]["detail"]["via"], "api");
    assert!(!json!(failed).to_string().contains("gt-token"));
    assert_eq!(c.lock().unwrap().requests.len(), before + 1);
    assert_eq!(tag_of(bare.path(), "v1.1.0"), None);

    // tag_via: api without a credential: said, audited, nothing sent.
    let (_w2, bare2, merge2) = merged_release(VIA_API, None);
    s.register("acme/nocred", bare2.path()).await;
    s.push("acme/nocred", bare2.path(), &merge2, "nc-1").await;
    eventually("the missing credential audited", || async {
        audits(&s, "release.tag_failed").await.len() == 2
    })
    .await;
    let failed = audits(&s, "release.tag_failed").await;
    let e = failed.iter().find_map(|a| {
        a["detail"]["error"]
            .as_str()
            .filter(|e| e.contains("no forge credential"))
    });
    assert!(e.is_some(), "{failed:#?}");
    assert_eq!(c.lock().unwrap().requests.len(), before + 1);
    s.server.stop().await;
}
