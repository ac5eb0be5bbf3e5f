//! Helpers for the server's integration tests: real git repositories in temp
//! directories, real servers on loopback ports, real HTTP.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const SECRET: &str = "webhook-secret-for-tests";

#[allow(unused_imports)] // each test binary uses its own subset
pub use hangar_testkit::{git, repo_with};

/// [`hangar_testkit::commit`], in the shape these tests were written for.
pub fn commit(dir: &Path, files: &[(&str, &str)]) -> Option<String> {
    Some(hangar_testkit::commit(dir, files))
}

pub fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct TestServer {
    pub server: hangar_server::Server,
    pub token: String,
    pub http: reqwest::Client,
    pub data: tempfile::TempDir,
}

pub async fn start_with(configure: impl FnOnce(&mut hangar_server::ServeConfig)) -> TestServer {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = hangar_server::ServeConfig::new(
        data.path().to_path_buf(),
        Arc::new(hangar_agent::EngineRunner::default()),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.cron = false;
    configure(&mut cfg);
    let server = hangar_server::start(cfg).await.unwrap();
    let token = server.admin_token.clone().unwrap();
    TestServer {
        server,
        token,
        http: reqwest::Client::new(),
        data,
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.url(), path)
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Registers an agent with `token` (as `hangar agent` does first) under
    /// `id`; its credential, the only key the agent protocol takes.
    pub async fn agent_credential(&self, token: &str, id: &str) -> String {
        let r = self
            .http
            .post(self.url("/api/v1/agents/register"))
            .bearer_auth(token)
            .json(&json!({"protocol_version": hangar_agent::PROTOCOL_VERSION,
                "agent_id": id, "name": id, "labels": ["ubuntu-latest"], "capacity": 1}))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(code, 201, "registering {id}: {v}");
        assert_eq!(v["agent_id"], id, "{v}");
        v["credential"].as_str().unwrap().to_string()
    }

    pub async fn register(&self, name: &str, path: &Path) -> i64 {
        let (s, v) = self
            .post(
                "/api/v1/repos",
                json!({"name": name, "clone_url": path.to_string_lossy(), "forge": "github", "webhook_secret": SECRET}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// A signed GitHub push delivery.
    /// Each delivery id has its own body (as every real delivery does: the same
    /// body under a new id is refused as a replay); a redelivery repeats both.
    pub async fn push(&self, repo: &str, clone: &Path, sha: &str, delivery: &str) -> (u16, Value) {
        let mut body: Value = serde_json::from_slice(&push_body(repo, clone, sha)).unwrap();
        body["head_commit"] = json!({"id": sha, "message": delivery});
        let body = serde_json::to_vec(&body).unwrap();
        self.hook("github", &body, &sign(&body), delivery, "push")
            .await
    }

    pub async fn hook(
        &self,
        forge: &str,
        body: &[u8],
        sig: &str,
        delivery: &str,
        event: &str,
    ) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/hooks/{forge}")))
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sig)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn wait_run(&self, id: i64, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let v = self.get(&format!("/api/v1/runs/{id}")).await;
            if v["run"]["status"] == "completed" {
                return v;
            }
            assert!(
                start.elapsed() < timeout,
                "run {id} did not complete: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn runs(&self) -> Vec<Value> {
        self.get("/api/v1/runs?limit=500")
            .await
            .as_array()
            .unwrap()
            .clone()
    }
}

pub fn push_body(repo: &str, clone: &Path, sha: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": sha,
        "repository": {"full_name": repo, "clone_url": clone.to_string_lossy()},
        "pusher": {"name": "tester"},
        "commits": [{"added": [".github/workflows/ci.yml"], "modified": [], "removed": []}]
    }))
    .unwrap()
}

pub fn hangar_bin() -> Option<PathBuf> {
    // The `hangar` binary, when the workspace built it (process-level tests).
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let bin = dir.join("hangar");
    bin.exists().then_some(bin)
}

/// A project released as 1.0.0 whose `feat:` commit is prepared as 1.1.0 by
/// `hangar release --pr`'s own code on `release/v1.1.0` and merged into
/// `main` with a merge commit, everything pushed to the bare repository
/// `bare`. Returns (work tree, merge commit). `later_yml` replaces
/// hangar.yml on main while the release is reviewed.
pub fn merged_release_into(
    bare: &Path,
    hangar_yml: &str,
    later_yml: Option<&str>,
) -> (tempfile::TempDir, String) {
    let work = hangar_testkit::empty_repo();
    let dir = work.path();
    hangar_testkit::commit(
        dir,
        &[("version.txt", "1.0.0\n"), ("hangar.yml", hangar_yml)],
    );
    git(dir, &["tag", "-a", "v1.0.0", "-m", "v1.0.0"]);
    hangar_testkit::write(dir, "src.txt", "feature");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "feat: a feature"]);
    git(
        dir,
        &["remote", "add", "origin", &bare.display().to_string()],
    );
    git(dir, &["push", "-q", "origin", "main", "--tags"]);
    let opts = hangar_release::Options {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let prepared = hangar_release::pr::prepare(&opts, "origin", true).unwrap();
    assert_eq!(prepared[0].branch.as_deref(), Some("release/v1.1.0"));
    // Main moves on while the release is reviewed, then it is merged.
    hangar_testkit::write(dir, "other.txt", "x");
    if let Some(text) = later_yml {
        hangar_testkit::write(dir, "hangar.yml", text);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fix: another change"]);
    git(
        dir,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge pull request #3 from acme/release/v1.1.0",
            "release/v1.1.0",
        ],
    );
    git(dir, &["push", "-q", "origin", "main"]);
    let merge = git(dir, &["rev-parse", "HEAD"]).trim().to_string();
    (work, merge)
}

/// The commit a tag of the repository at `bare` points at, if it exists.
pub fn tag_of(bare: &Path, tag: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["rev-parse", "--verify", "-q"])
        .arg(format!("refs/tags/{tag}"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The audit entries of `action`.
pub async fn audits(s: &TestServer, action: &str) -> Vec<Value> {
    s.get("/api/v1/audit?limit=200")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == action)
        .cloned()
        .collect()
}

/// Registers `name` with an https (or any) clone URL: its id.
pub async fn register_url(s: &TestServer, name: &str, clone_url: &str) -> i64 {
    let (code, v) = s
        .post(
            "/api/v1/repos",
            json!({"name": name, "clone_url": clone_url, "forge": "github", "webhook_secret": SECRET}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    v["id"].as_i64().unwrap()
}

/// Sets a repository's forge credential (`PUT /api/v1/repos/{id}/forge`).
pub async fn put_forge_credential(s: &TestServer, repo: i64, body: Value) -> (u16, Value) {
    let r = s
        .http
        .put(s.url(&format!("/api/v1/repos/{repo}/forge")))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// Waits up to 20 s for `what` to hold.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
