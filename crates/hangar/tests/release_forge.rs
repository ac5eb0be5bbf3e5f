//! `hangar release --pr` opening the release's pull request on the forge, as
//! release-please does: the built binary, real git repositories pushed to
//! bare ones, and a contract server on loopback playing GitHub, Gitea and
//! GitLab. It implements each forge's documented pull (merge) request
//! endpoints, refuses what the forge would refuse (a wrong auth header, a
//! head branch that was not pushed, a second open pull request from the same
//! branch, GitHub's list `head` filter without its owner) and records what
//! it was sent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use hangar_testkit::git;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Pr {
    project: String,
    number: u64,
    head: String,
    base: String,
    title: String,
    body: String,
    /// `open`, `merged` or `closed`.
    state: &'static str,
}

#[derive(Default)]
struct Contract {
    prs: Vec<Pr>,
    /// (method, path) of every authenticated request.
    requests: Vec<(String, String)>,
    violations: Vec<String>,
    /// Where each project's branches are pushed: a head must exist there.
    remotes: HashMap<String, PathBuf>,
}

type Shared = Arc<Mutex<Contract>>;

fn pr_json(forge: &str, base_url: &str, p: &Pr) -> Value {
    if forge == "gitlab" {
        json!({
            "iid": p.number,
            "state": if p.state == "open" { "opened" } else { p.state },
            "source_branch": p.head,
            "target_branch": p.base,
            "title": p.title,
            "description": p.body,
            "web_url": format!("{base_url}/{}/-/merge_requests/{}", p.project, p.number),
        })
    } else {
        json!({
            "number": p.number,
            "state": if p.state == "open" { "open" } else { "closed" },
            "merged": p.state == "merged",
            "merged_at": if p.state == "merged" { json!("2026-01-01T00:00:00Z") } else { Value::Null },
            "head": {"ref": p.head},
            "base": {"ref": p.base},
            "title": p.title,
            "body": p.body,
            "html_url": format!("{base_url}/{}/pulls/{}", p.project, p.number),
        })
    }
}

async fn handle(
    State(c): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let path = uri.path().to_string();
    let (forge, rest) = if let Some(r) = path.strip_prefix("/github/repos/") {
        ("github", r.to_string())
    } else if let Some(r) = path.strip_prefix("/gitea/api/v1/repos/") {
        ("gitea", r.to_string())
    } else if let Some(r) = path.strip_prefix("/gitlab/api/v4/projects/") {
        ("gitlab", r.to_string())
    } else {
        return (StatusCode::NOT_FOUND, format!("no route {path}"));
    };
    let collection = if forge == "gitlab" {
        "/merge_requests"
    } else {
        "/pulls"
    };
    let (project, item) = match rest.split_once(collection) {
        Some((p, tail)) => (p.to_string(), tail.trim_start_matches('/').to_string()),
        None => return (StatusCode::NOT_FOUND, format!("no route {path}")),
    };
    let project = if forge == "gitlab" {
        // GitLab takes the project's path URL-encoded in one segment.
        if project.contains('/') {
            return (StatusCode::NOT_FOUND, "project path not encoded".into());
        }
        project.replace("%2F", "/")
    } else {
        project
    };
    let hdr = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (auth_ok, auth_seen) = match forge {
        "github" => (
            hdr("authorization") == "Bearer gh-token"
                && hdr("accept") == "application/vnd.github+json",
            hdr("authorization"),
        ),
        "gitea" => (
            hdr("authorization") == "token gt-token",
            hdr("authorization"),
        ),
        _ => (hdr("private-token") == "gl-token", hdr("private-token")),
    };
    if !auth_ok {
        let _ = auth_seen;
        return (
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials"}).to_string(),
        );
    }
    let mut g = c.lock().unwrap();
    g.requests.push((method.to_string(), path.clone()));
    if hdr("user-agent").is_empty() {
        g.violations
            .push("GitHub refuses requests without a User-Agent".into());
    }
    let base_url = format!("https://{forge}.example");
    let query: HashMap<String, String> = reqwest::Url::parse(&format!("http://x{uri}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let bad = |g: &mut Contract, code: StatusCode, why: String| {
        g.violations.push(format!("{method} {path}: {why}"));
        (code, json!({"message": why}).to_string())
    };
    match (method.as_str(), item.as_str()) {
        ("GET", "") => {
            let open = if forge == "gitlab" { "opened" } else { "open" };
            let all = match query.get("state").map(String::as_str) {
                Some(s) if s == open => false,
                Some("all") => true,
                _ => return bad(&mut g, StatusCode::BAD_REQUEST, "state filter".into()),
            };
            let mut list: Vec<&Pr> = g
                .prs
                .iter()
                .filter(|p| p.project == project && (all || p.state == "open"))
                .collect();
            match forge {
                "github" => {
                    // GitHub's `head` is `user:ref-name`; a bare branch matches nothing.
                    if let Some(h) = query.get("head") {
                        let Some((owner, branch)) = h.split_once(':') else {
                            return bad(
                                &mut g,
                                StatusCode::OK,
                                format!("head `{h}` lacks its owner"),
                            );
                        };
                        let o = project.split('/').next().unwrap();
                        list.retain(|p| owner == o && p.head == branch);
                    }
                    if let Some(b) = query.get("base") {
                        list.retain(|p| &p.base == b);
                    }
                }
                // Gitea's list has no head filter: every open one comes back.
                "gitea" => {}
                _ => {
                    if let Some(h) = query.get("source_branch") {
                        list.retain(|p| &p.head == h);
                    }
                    if let Some(b) = query.get("target_branch") {
                        list.retain(|p| &p.base == b);
                    }
                }
            }
            let v: Vec<Value> = list.iter().map(|p| pr_json(forge, &base_url, p)).collect();
            (StatusCode::OK, Value::Array(v).to_string())
        }
        ("POST", "") => {
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return bad(&mut g, StatusCode::BAD_REQUEST, "body is not JSON".into());
            };
            let (head_key, base_key, body_key) = if forge == "gitlab" {
                ("source_branch", "target_branch", "description")
            } else {
                ("head", "base", "body")
            };
            let field = |k: &str| v[k].as_str().map(String::from);
            let (Some(head), Some(base), Some(title), Some(text)) = (
                field(head_key),
                field(base_key),
                field("title"),
                field(body_key),
            ) else {
                return bad(
                    &mut g,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("missing fields in {v}"),
                );
            };
            let remote = g.remotes.get(&project).cloned();
            let pushed = remote.is_some_and(|r| {
                Command::new("git")
                    .arg("-C")
                    .arg(&r)
                    .args(["rev-parse", "--verify", "-q"])
                    .arg(format!("refs/heads/{head}"))
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
            if !pushed {
                return bad(
                    &mut g,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("head `{head}` is not a branch of {project}"),
                );
            }
            if g.prs
                .iter()
                .any(|p| p.project == project && p.head == head && p.state == "open")
            {
                let code = if forge == "github" {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::CONFLICT
                };
                return bad(
                    &mut g,
                    code,
                    format!("A pull request already exists for {head}"),
                );
            }
            let number = g
                .prs
                .iter()
                .filter(|p| p.project == project)
                .map(|p| p.number)
                .max()
                .unwrap_or(0)
                + 1;
            let pr = Pr {
                project,
                number,
                head,
                base,
                title,
                body: text,
                state: "open",
            };
            let out = pr_json(forge, &base_url, &pr);
            g.prs.push(pr);
            (StatusCode::CREATED, out.to_string())
        }
        (m, n) if !n.is_empty() && (m == "PATCH" || m == "PUT") => {
            if (forge == "gitlab") != (m == "PUT") {
                return bad(&mut g, StatusCode::METHOD_NOT_ALLOWED, "method".into());
            }
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return bad(&mut g, StatusCode::BAD_REQUEST, "body is not JSON".into());
            };
            let body_key = if forge == "gitlab" {
                "description"
            } else {
                "body"
            };
            let number: u64 = n.parse().unwrap_or(0);
            let Some(p) = g
                .prs
                .iter_mut()
                .find(|p| p.project == project && p.number == number)
            else {
                return bad(
                    &mut g,
                    StatusCode::NOT_FOUND,
                    format!("no pull request {n}"),
                );
            };
            if let Some(t) = v["title"].as_str() {
                p.title = t.into();
            }
            if let Some(b) = v[body_key].as_str() {
                p.body = b.into();
            }
            let out = pr_json(forge, &base_url, p);
            (StatusCode::OK, out.to_string())
        }
        _ => bad(&mut g, StatusCode::NOT_FOUND, "no such route".into()),
    }
}

async fn contract() -> (String, Shared) {
    let shared: Shared = Default::default();
    let app = Router::new().fallback(handle).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), shared)
}

/// A repository whose next release is 1.1.0, with `origin` fetching from
/// `fetch_url` (a forge's address, or the bare repository) and pushing to a
/// bare repository. Returns (work tree, bare remote, default branch).
fn project(fetch_url: Option<&str>) -> (tempfile::TempDir, tempfile::TempDir, String) {
    let repo = hangar_testkit::empty_repo();
    let dir = repo.path();
    hangar_testkit::commit(dir, &[("version.txt", "1.0.0\n")]);
    git(dir, &["tag", "-a", "v1.0.0", "-m", "v1.0.0"]);
    hangar_testkit::write(dir, "src.txt", "feature");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "feat: a feature"]);
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "-q", "--bare"]);
    let bare = remote.path().display().to_string();
    git(
        dir,
        &["remote", "add", "origin", fetch_url.unwrap_or(&bare)],
    );
    git(dir, &["config", "remote.origin.pushurl", &bare]);
    let main = git(dir, &["symbolic-ref", "--short", "HEAD"])
        .trim()
        .to_string();
    (repo, remote, main)
}

/// `hangar release --pr` with only the given forge variables set.
fn release_pr(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hangar"));
    cmd.args(["release", "--pr"])
        .args(args)
        .arg("--dir")
        .arg(dir);
    for k in [
        "GITHUB_TOKEN",
        "HANGAR_FORGE_TOKEN",
        "HANGAR_FORGE",
        "HANGAR_FORGE_API_URL",
        "HANGAR_FORGE_PROJECT",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a blocking command beside the contract server.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_branch_becomes_one_pull_request_on_each_forge() {
    let (forge, c) = contract().await;

    // No token: the branch is pushed and the compare link printed, as before.
    let (repo, remote, main) = project(Some("https://github.com/acme/app.git"));
    let dir = repo.path().to_path_buf();
    let o = blocking(move || release_pr(&dir, &[], &[])).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "open the pull request: https://github.com/acme/app/compare/{main}...release/v1.1.0?expand=1"
        )),
        "{}",
        text(&o)
    );
    assert!(git(remote.path(), &["branch", "--list", "release/v1.1.0"]).contains("release/v1.1.0"));
    assert!(c.lock().unwrap().requests.is_empty());

    // GitHub, its kind and project read from the remote URL, its API root
    // given (as GitHub Enterprise needs): opened with the changelog as body.
    let (repo, remote, main) = project(Some("git@github.com:acme/gh.git"));
    c.lock()
        .unwrap()
        .remotes
        .insert("acme/gh".into(), remote.path().into());
    let dir = repo.path().to_path_buf();
    let api = format!("{forge}/github");
    let o = blocking(move || {
        release_pr(
            &dir,
            &[("GITHUB_TOKEN", "gh-token")],
            &["--forge-api", &api],
        )
    })
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("opened pull request #1: https://github.example/acme/gh/pulls/1"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("compare/"), "{}", text(&o));
    {
        let g = c.lock().unwrap();
        let prs: Vec<&Pr> = g.prs.iter().filter(|p| p.project == "acme/gh").collect();
        assert_eq!(prs.len(), 1, "{prs:#?}");
        assert_eq!(prs[0].title, "chore(release): v1.1.0");
        assert_eq!(prs[0].head, "release/v1.1.0");
        assert_eq!(prs[0].base, main);
        assert!(prs[0].body.starts_with("## "), "{}", prs[0].body);
        assert!(prs[0].body.contains("a feature"), "{}", prs[0].body);
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
    }

    // GitHub again, where a pull request from the release branch is open
    // already (opened by hand from the compare link): it is updated, and no
    // second one is opened (the contract refuses a duplicate).
    let (repo, remote, main) = project(Some("https://github.com/acme/again.git"));
    c.lock()
        .unwrap()
        .remotes
        .insert("acme/again".into(), remote.path().into());
    for (number, head) in [(7, "release/v1.1.0"), (8, "feature/other")] {
        c.lock().unwrap().prs.push(Pr {
            project: "acme/again".into(),
            number,
            head: head.into(),
            base: main.clone(),
            title: "wip".into(),
            body: String::new(),
            state: "open",
        });
    }
    let dir = repo.path().to_path_buf();
    let api = format!("{forge}/github");
    let o = blocking(move || {
        release_pr(
            &dir,
            &[("GITHUB_TOKEN", "gh-token")],
            &["--forge-api", &api],
        )
    })
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("updated the open pull request #7"),
        "{}",
        text(&o)
    );

    // Forgejo (a local remote: kind, API root and project named), whose list
    // cannot filter by head: the open pull request of another branch is left
    // alone and the release's is opened. HANGAR_FORGE_TOKEN is the token.
    let (repo, remote, main) = project(None);
    c.lock()
        .unwrap()
        .remotes
        .insert("acme/gt".into(), remote.path().into());
    c.lock().unwrap().prs.push(Pr {
        project: "acme/gt".into(),
        number: 3,
        head: "feature/x".into(),
        base: main.clone(),
        title: "a feature".into(),
        body: "keep".into(),
        state: "open",
    });
    let dir = repo.path().to_path_buf();
    let api = format!("{forge}/gitea/api/v1/");
    let o = blocking(move || {
        release_pr(
            &dir,
            &[
                ("HANGAR_FORGE_TOKEN", "gt-token"),
                ("HANGAR_FORGE", "forgejo"),
            ],
            &["--forge-api", &api, "--forge-project", "acme/gt"],
        )
    })
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("opened pull request #4"), "{}", text(&o));

    // GitLab, with the release's merge request open already: updated (PUT).
    let (repo, remote, main) = project(None);
    c.lock()
        .unwrap()
        .remotes
        .insert("acme/gl".into(), remote.path().into());
    c.lock().unwrap().prs.push(Pr {
        project: "acme/gl".into(),
        number: 2,
        head: "release/v1.1.0".into(),
        base: main.clone(),
        title: "Draft".into(),
        body: String::new(),
        state: "open",
    });
    let dir = repo.path().to_path_buf();
    let api = format!("{forge}/gitlab/api/v4");
    let o = blocking(move || {
        release_pr(
            &dir,
            &[("HANGAR_FORGE_TOKEN", "gl-token")],
            &[
                "--forge",
                "gitlab",
                "--forge-api",
                &api,
                "--forge-project",
                "acme/gl",
            ],
        )
    })
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            "updated the open pull request #2: https://gitlab.example/acme/gl/-/merge_requests/2"
        ),
        "{}",
        text(&o)
    );

    {
        let g = c.lock().unwrap();
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
        let by =
            |p: &str| -> Vec<Pr> { g.prs.iter().filter(|x| x.project == p).cloned().collect() };
        let again = by("acme/again");
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].title, "chore(release): v1.1.0");
        assert!(again[0].body.contains("a feature"));
        assert_eq!(
            again[1].title, "wip",
            "another branch's pull request is not touched"
        );
        let gt = by("acme/gt");
        assert_eq!(gt.len(), 2);
        assert_eq!(
            (gt[0].title.as_str(), gt[0].body.as_str()),
            ("a feature", "keep")
        );
        assert_eq!(gt[1].head, "release/v1.1.0");
        assert_eq!(gt[1].title, "chore(release): v1.1.0");
        let gl = by("acme/gl");
        assert_eq!(gl.len(), 1);
        assert_eq!(gl[0].title, "chore(release): v1.1.0");
        assert!(gl[0].body.contains("a feature"));
        // What each forge was asked: a list, then one create or one edit.
        let asked = |prefix: &str| -> Vec<String> {
            g.requests
                .iter()
                .filter(|(_, p)| p.starts_with(prefix))
                .map(|(m, _)| m.clone())
                .collect()
        };
        assert_eq!(asked("/github/repos/acme/gh/"), ["GET", "POST"]);
        assert_eq!(asked("/github/repos/acme/again/"), ["GET", "PATCH"]);
        assert_eq!(asked("/gitea/api/v1/repos/acme/gt/"), ["GET", "POST"]);
        assert_eq!(asked("/gitlab/api/v4/projects/acme%2Fgl/"), ["GET", "PUT"]);
    }

    // A token the forge refuses: the command fails and says the branch is
    // pushed, without retrying a 401.
    let (repo, remote, _) = project(Some("https://github.com/acme/refused.git"));
    let dir = repo.path().to_path_buf();
    let api = format!("{forge}/github");
    let o =
        blocking(move || release_pr(&dir, &[("GITHUB_TOKEN", "expired")], &["--forge-api", &api]))
            .await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o)
            .contains("release/v1.1.0 is pushed to origin, but its pull request was not opened")
            && text(&o).contains("401"),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains("expired"),
        "the token is never printed: {}",
        text(&o)
    );
    assert!(git(remote.path(), &["branch", "--list", "release/v1.1.0"]).contains("release/v1.1.0"));
}

/// `hangar release --pr` run again while its branch exists: the branch is
/// rebuilt from HEAD and pushed with a lease, and the open pull request
/// updated; once that pull request is merged or closed, it stops and says
/// what to do, changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_release_branch_is_refreshed_while_its_pull_request_is_open() {
    let (forge, c) = contract().await;
    let (repo, remote, main) = project(Some("https://github.com/acme/refresh.git"));
    c.lock()
        .unwrap()
        .remotes
        .insert("acme/refresh".into(), remote.path().into());
    let api = format!("{forge}/github");
    let run = |dir: PathBuf, api: String| {
        blocking(move || {
            release_pr(
                &dir,
                &[("GITHUB_TOKEN", "gh-token")],
                &["--forge-api", &api],
            )
        })
    };
    let o = run(repo.path().into(), api.clone()).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("opened pull request #1"), "{}", text(&o));
    let first = git(remote.path(), &["rev-parse", "release/v1.1.0"]);

    // A fix lands on main while the release is reviewed: run again.
    let dir = repo.path();
    hangar_testkit::write(dir, "fix.txt", "fixed");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fix: a late fix"]);
    let o = run(dir.into(), api.clone()).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("refreshed 1.1.0 on branch release/v1.1.0"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("--force-with-lease"), "{}", text(&o));
    assert!(
        text(&o).contains("updated the open pull request #1"),
        "{}",
        text(&o)
    );
    let r = remote.path();
    let second = git(r, &["rev-parse", "release/v1.1.0"]);
    assert_ne!(first, second);
    assert!(git(r, &["show", "release/v1.1.0:CHANGELOG.md"]).contains("a late fix"));
    assert_eq!(
        git(r, &["log", "-1", "--format=%s", "release/v1.1.0"]).trim(),
        "chore(release): v1.1.0"
    );
    // Rebuilt on main's HEAD, not stacked on the old release commit.
    assert_eq!(
        git(r, &["rev-parse", "release/v1.1.0^"]).trim(),
        git(dir, &["rev-parse", "HEAD"]).trim()
    );
    {
        let g = c.lock().unwrap();
        let prs: Vec<&Pr> = g
            .prs
            .iter()
            .filter(|p| p.project == "acme/refresh")
            .collect();
        assert_eq!(prs.len(), 1, "{prs:#?}");
        assert!(prs[0].body.contains("a late fix"), "{}", prs[0].body);
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
    }
    assert_eq!(git(dir, &["symbolic-ref", "--short", "HEAD"]).trim(), main);

    // The pull request was merged (and the merge not pulled yet), then
    // closed: each stops with advice, and the branch stays as it was.
    for (state, says) in [
        ("merged", "was merged"),
        ("closed", "was closed without merging"),
    ] {
        c.lock().unwrap().prs[0..]
            .iter_mut()
            .filter(|p| p.project == "acme/refresh")
            .for_each(|p| p.state = state);
        hangar_testkit::write(dir, &format!("{state}.txt"), state);
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", &format!("fix: after {state}")]);
        let o = run(dir.into(), api.clone()).await;
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("pull request #1 {says}")),
            "{}",
            text(&o)
        );
        assert!(
            text(&o).contains("git push origin --delete release/v1.1.0"),
            "{}",
            text(&o)
        );
        assert_eq!(git(r, &["rev-parse", "release/v1.1.0"]), second);
        assert_eq!(git(dir, &["symbolic-ref", "--short", "HEAD"]).trim(), main);
    }
}
