//! The attack suite, second part: what a token, a name, a fork's pull request
//! or another user of the machine can reach on a real server on loopback
//! (tokens only in the header, expiry and revocation, what a `read` or
//! `write` token may do, names, the data directory's modes, "approve and
//! run", the cache scope of an untrusted job, secrets at three levels). See
//! docs/SECURITY.md.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn new_token(s: &TestServer, name: &str, role: &str, expires_in: Option<i64>) -> Value {
    let mut body = json!({"name": name, "role": role});
    if let Some(e) = expires_in {
        body["expires_in"] = json!(e);
    }
    let (code, v) = s.post("/api/v1/tokens", body).await;
    assert_eq!(code, 201, "{v}");
    v
}

async fn status_with(s: &TestServer, method: &str, path: &str, token: &str) -> u16 {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = s.http.request(m, s.url(path)).bearer_auth(token);
    if method != "GET" && method != "DELETE" {
        r = r.json(&json!({}));
    }
    r.send().await.unwrap().status().as_u16()
}

async fn put_json(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let r = s
        .http
        .put(s.url(path))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// One long poll as a remote agent; the assignment, if any.
async fn poll(s: &TestServer, token: &str, agent_id: &str, wait_ms: u64) -> Option<Value> {
    let r = s
        .http
        .post(s.url("/api/v1/agent/poll"))
        .bearer_auth(token)
        .json(
            &json!({"protocol_version": hangar_agent::PROTOCOL_VERSION, "agent_id": agent_id, "name": agent_id, "labels": ["ubuntu-latest"],
                      "capacity": 1, "free_slots": 1, "wait_ms": wait_ms}),
        )
        .send()
        .await
        .unwrap();
    (r.status() == 200).then_some(())?;
    Some(r.json().await.unwrap())
}

#[tokio::test]
async fn tokens_in_urls_are_refused_except_a_stream_token_for_its_own_stream() {
    let (repo, sha) = repo_with(&[(
        ".github/workflows/ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo ok}]\n",
    )]);
    let s = start_with(|c| c.embedded_capacity = 0).await;
    s.register("acme/app", repo.path()).await;
    let (code, v) = s.push("acme/app", repo.path(), &sha, "d-1").await;
    assert_eq!(code, 202, "{v}");
    let run = v["runs"][0].as_i64().unwrap();
    let get = |path: String| {
        let http = s.http.clone();
        let url = s.url(&path);
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    // The admin token in a URL opens nothing, the live stream included.
    let admin = &s.token;
    for path in [
        format!("/api/v1/runs?access_token={admin}"),
        format!("/api/v1/runs/{run}?access_token={admin}"),
        format!("/api/v1/jobs/1/logs/raw?access_token={admin}"),
        format!("/api/v1/runs/{run}/events?access_token={admin}"),
    ] {
        assert_eq!(get(path.clone()).await, 401, "{path}");
    }
    // A read token mints the stream token of a run; it opens that run's
    // stream and nothing else.
    let read = new_token(&s, "viewer", "read", None).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .http
        .post(s.url(&format!("/api/v1/runs/{run}/events/token")))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let minted: Value = r.json().await.unwrap();
    let st = minted["token"].as_str().unwrap().to_string();
    assert_eq!(minted["expires_in"], 60);
    let r = s
        .http
        .get(s.url(&format!("/api/v1/runs/{run}/events?access_token={st}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    for path in [
        format!("/api/v1/runs/{}/events?access_token={st}", run + 1),
        format!("/api/v1/runs/{run}?access_token={st}"),
        format!("/api/v1/runs?access_token={st}"),
    ] {
        assert_eq!(get(path.clone()).await, 401, "{path}");
    }
    // Nor as a bearer token, nor with its expiry moved or its run changed.
    assert_eq!(status_with(&s, "GET", "/api/v1/runs", &st).await, 401);
    let parts: Vec<&str> = st.split('.').collect();
    let later = format!(
        "hst.{run}.{}.{}",
        parts[2].parse::<i64>().unwrap() + 3_600_000,
        parts[3]
    );
    let other = format!("hst.{}.{}.{}", run + 1, parts[2], parts[3]);
    assert_eq!(
        get(format!("/api/v1/runs/{run}/events?access_token={later}")).await,
        401
    );
    assert_eq!(
        get(format!(
            "/api/v1/runs/{}/events?access_token={other}",
            run + 1
        ))
        .await,
        401
    );
    s.server.stop().await;
}

#[tokio::test]
async fn expired_and_revoked_tokens_answer_401() {
    let s = start_with(|c| c.embedded_capacity = 0).await;
    let short = new_token(&s, "short-lived", "read", Some(1)).await;
    let short_token = short["token"].as_str().unwrap().to_string();
    assert!(short["expires_at"].as_i64().is_some(), "{short}");
    assert_eq!(
        status_with(&s, "GET", "/api/v1/runs", &short_token).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = s
        .http
        .get(s.url("/api/v1/runs"))
        .bearer_auth(&short_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("expired"), "{v}");

    let kept = new_token(&s, "ci-bot", "admin", None).await;
    let kept_token = kept["token"].as_str().unwrap().to_string();
    assert_eq!(
        status_with(&s, "GET", "/api/v1/tokens", &kept_token).await,
        200
    );
    let id = kept["id"].as_i64().unwrap();
    assert_eq!(
        status_with(&s, "DELETE", &format!("/api/v1/tokens/{id}"), &s.token).await,
        204
    );
    assert_eq!(
        status_with(&s, "GET", "/api/v1/runs", &kept_token).await,
        401
    );
    assert_eq!(
        status_with(&s, "DELETE", &format!("/api/v1/tokens/{id}"), &s.token).await,
        404,
        "revoked once"
    );
    let listed = s.get("/api/v1/tokens").await;
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap();
    assert!(row["revoked_at"].as_i64().is_some(), "{row}");
    for bad in [0, -5, i64::MAX] {
        let (code, v) = s
            .post(
                "/api/v1/tokens",
                json!({"name": "x", "role": "read", "expires_in": bad}),
            )
            .await;
        assert_eq!(code, 400, "expires_in {bad}: {v}");
    }
    s.server.stop().await;
}

#[tokio::test]
async fn read_tokens_see_neither_tokens_nor_the_audit_log_and_write_tokens_change_no_settings() {
    let s = start_with(|c| c.embedded_capacity = 0).await;
    let repo = tempfile::tempdir().unwrap();
    let id = s.register("acme/app", repo.path()).await;
    let read = new_token(&s, "viewer", "read", None).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let write = new_token(&s, "maintainer", "write", None).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path) in [
        ("GET", "/api/v1/tokens".to_string()),
        ("GET", "/api/v1/audit".to_string()),
        ("POST", "/api/v1/tokens".to_string()),
        ("DELETE", "/api/v1/tokens/1".to_string()),
    ] {
        assert_eq!(
            status_with(&s, method, &path, &read).await,
            403,
            "read {method} {path}"
        );
        assert_eq!(
            status_with(&s, method, &path, &write).await,
            403,
            "write {method} {path}"
        );
    }
    for (method, path) in [
        ("PUT", format!("/api/v1/repos/{id}/secrets/X")),
        ("PUT", format!("/api/v1/repos/{id}/settings")),
        (
            "PUT",
            format!("/api/v1/repos/{id}/environments/prod/secrets/X"),
        ),
        ("POST", "/api/v1/repos".to_string()),
        ("POST", "/api/v1/notifications".to_string()),
        ("POST", "/api/v1/agent/poll".to_string()),
    ] {
        assert_eq!(
            status_with(&s, method, &path, &write).await,
            403,
            "write {method} {path}"
        );
        assert_eq!(
            status_with(&s, method, &path, &read).await,
            403,
            "read {method} {path}"
        );
    }
    assert_eq!(status_with(&s, "GET", "/api/v1/runs", &read).await, 200);
    assert_eq!(status_with(&s, "GET", "/api/v1/runs", &write).await, 200);
    // A write token reaches run actions (404: there is no run 999).
    assert_eq!(
        status_with(&s, "POST", "/api/v1/runs/999/approve", &write).await,
        404
    );
    assert_eq!(
        status_with(&s, "POST", "/api/v1/runs/999/approve", &read).await,
        403
    );
    s.server.stop().await;
}

#[tokio::test]
async fn names_of_secrets_variables_environments_and_artifacts_are_checked() {
    let s = start_with(|c| c.embedded_capacity = 0).await;
    let repo = tempfile::tempdir().unwrap();
    let id = s.register("acme/app", repo.path()).await;
    let long = "A".repeat(101);
    // (`..` alone, even as `%2E%2E`, is a dot segment URLs resolve away.)
    for bad in [
        "a..b",
        "with%20space",
        "semi%3Bcolon",
        "%C3%BCml",
        long.as_str(),
    ] {
        for path in [
            format!("/api/v1/repos/{id}/secrets/{bad}"),
            format!("/api/v1/repos/{id}/variables/{bad}"),
            format!("/api/v1/repos/{id}/environments/{bad}/secrets/OK"),
            format!("/api/v1/repos/{id}/environments/prod/secrets/{bad}"),
            format!("/api/v1/repos/{id}/environments/{bad}/variables/OK"),
        ] {
            let (code, v) = put_json(&s, &path, json!({"value": "v"})).await;
            assert_eq!(code, 400, "{path}: {v}");
            assert!(v["error"].as_str().unwrap().contains("invalid"), "{v}");
        }
    }
    let r = s
        .http
        .post(s.url("/api/v1/runs/1/artifacts/a..b"))
        .bearer_auth(&s.token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (code, _) = put_json(
        &s,
        &format!("/api/v1/repos/{id}/environments/Prod-1.eu_west/secrets/DEPLOY_KEY"),
        json!({"value": "v"}),
    )
    .await;
    assert_eq!(code, 204);
    s.server.stop().await;
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_directory_is_private_and_fixed_at_start_up() {
    let s = start_with(|c| c.embedded_capacity = 0).await;
    let data = s.data.path().to_path_buf();
    // A secret sealed, an artifact stored: the key, the database and a blob exist.
    let repo = tempfile::tempdir().unwrap();
    let id = s.register("acme/app", repo.path()).await;
    let (code, _) = put_json(
        &s,
        &format!("/api/v1/repos/{id}/secrets/TOKEN"),
        json!({"value": "v"}),
    )
    .await;
    assert_eq!(code, 204);
    let r = s
        .http
        .post(s.url("/api/v1/runs/1/artifacts/out"))
        .bearer_auth(&s.token)
        .body("bytes")
        .send()
        .await
        .unwrap();
    // No run 1: refused before a blob is written; store one through the store instead.
    assert_eq!(r.status(), 404);
    let digest = s.server.app.store.put_blob(b"artifact bytes").unwrap();
    let blob = data.join("blobs/sha256").join(&digest[..2]).join(&digest);
    assert_eq!(mode(&data), 0o700, "the data directory");
    for f in ["hangar.db", "secret.key", "lease.key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&blob), 0o600, "a blob");
    s.server.stop().await;

    // An older server (or a umask) left it readable: the next start fixes it.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["hangar.db", "secret.key", "lease.key"] {
        std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(data.join("blobs"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = hangar_server::ServeConfig::new(
        data.clone(),
        Arc::new(hangar_agent::EngineRunner::default()),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.cron = false;
    cfg.embedded_capacity = 0;
    let again = hangar_server::start(cfg).await.unwrap();
    assert_eq!(mode(&data), 0o700);
    for f in ["hangar.db", "secret.key", "lease.key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f} after a restart");
    }
    assert_eq!(mode(&data.join("blobs")), 0o700);
    again.stop().await;
}

/// A signed pull request delivery from `head_repo` (a fork when it is not `acme/app`).
async fn pull_request(
    s: &TestServer,
    number: i64,
    sha: &str,
    head_repo: &str,
    association: &str,
) -> i64 {
    let body = serde_json::to_vec(&json!({
        "action": "opened", "number": number,
        "pull_request": {"number": number, "author_association": association,
                         "user": {"login": "outsider"},
                         "head": {"sha": sha, "ref": "f", "repo": {"full_name": head_repo, "fork": head_repo != "acme/app"}},
                         "base": {"ref": "main"}},
        "repository": {"full_name": "acme/app", "default_branch": "main"}, "sender": {"login": "outsider"}
    }))
    .unwrap();
    let (code, v) = s
        .hook(
            "github",
            &body,
            &sign(&body),
            &format!("pr-{number}"),
            "pull_request",
        )
        .await;
    assert_eq!(code, 202, "{v}");
    v["runs"][0].as_i64().unwrap()
}

const PR_WORKFLOW: &str =
    "on: pull_request\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps: [{run: echo ok}]\n";

#[tokio::test]
async fn approve_and_run_holds_a_forks_pull_request_until_a_writer_approves() {
    let (repo, sha) = repo_with(&[(".github/workflows/pr.yml", PR_WORKFLOW)]);
    let s = start_with(|c| c.embedded_capacity = 0).await;
    let id = s.register("acme/app", repo.path()).await;
    let (code, v) = put_json(
        &s,
        &format!("/api/v1/repos/{id}/settings"),
        json!({"approval_policy": "sometimes"}),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("untrusted"), "{v}");
    let (code, v) = put_json(
        &s,
        &format!("/api/v1/repos/{id}/settings"),
        json!({"approval_policy": "untrusted"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let agent = s
        .agent_credential(
            new_token(&s, "remote-box", "agent", None).await["token"]
                .as_str()
                .unwrap(),
            "box-1",
        )
        .await;

    let run = pull_request(&s, 7, &sha, "outsider/app", "CONTRIBUTOR").await;
    let v = s.get(&format!("/api/v1/runs/{run}")).await;
    assert_eq!(v["run"]["status"], "waiting", "{v:#}");
    assert_eq!(v["held"], true);
    let reason = v["run"]["waiting_reason"].as_str().unwrap();
    assert!(
        reason.contains("approval to run") && reason.contains("outsider/app"),
        "{reason}"
    );
    assert!(
        v["jobs"][0]["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("approval to run"),
        "{v:#}"
    );
    // Nothing is leased while it waits.
    assert!(poll(&s, &agent, "box-1", 1500).await.is_none());
    // A read token may not approve it; a write token may.
    let read = new_token(&s, "viewer", "read", None).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let write = new_token(&s, "maintainer", "write", None).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let approve = format!("/api/v1/runs/{run}/approve");
    assert_eq!(status_with(&s, "POST", &approve, &read).await, 403);
    assert_eq!(status_with(&s, "POST", &approve, &write).await, 202);
    assert_eq!(status_with(&s, "POST", &approve, &write).await, 409);
    let a = poll(&s, &agent, "box-1", 5000)
        .await
        .expect("the approved run's job is leased");
    assert_eq!(a["run_id"], run);
    assert_eq!(
        a["secrets"],
        json!({}),
        "approved is still untrusted: {a:#}"
    );
    // Its artifacts keep GitHub's names, never one that walks out of the
    // directory another agent unpacks it into.
    let (job, fence) = (a["job_id"].as_i64().unwrap(), a["fence"].as_i64().unwrap());
    let key = a["lease_key"].as_str().unwrap();
    for (name, want) in [
        ("my%20report", 201),
        ("a%3Ab", 400),
        ("a..b", 400),
        ("back%5Cslash", 400),
    ] {
        let r = s
            .http
            .post(s.url(&format!(
                "/api/v1/agent/jobs/{job}/artifacts/{name}?fence={fence}"
            )))
            .bearer_auth(&agent)
            .header("x-hangar-lease", key)
            .body("tar")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "artifact {name}");
    }
    let audit = s.get("/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "run.approve" && e["actor"] == "maintainer"),
        "{audit:#}"
    );

    // The repository's own branches are not held.
    let own = pull_request(&s, 8, &sha, "acme/app", "MEMBER").await;
    assert_eq!(s.get(&format!("/api/v1/runs/{own}")).await["held"], false);
    // `first-time` holds only a first-time contributor's fork.
    put_json(
        &s,
        &format!("/api/v1/repos/{id}/settings"),
        json!({"approval_policy": "first-time"}),
    )
    .await;
    let regular = pull_request(&s, 9, &sha, "regular/app", "CONTRIBUTOR").await;
    let newcomer = pull_request(&s, 10, &sha, "newcomer/app", "FIRST_TIME_CONTRIBUTOR").await;
    assert_eq!(
        s.get(&format!("/api/v1/runs/{regular}")).await["held"],
        false
    );
    let v = s.get(&format!("/api/v1/runs/{newcomer}")).await;
    assert_eq!(v["held"], true);
    assert!(
        v["run"]["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("first-time contributor"),
        "{v:#}"
    );
    // Cancelling a held run completes it.
    let r = s
        .http
        .post(s.url(&format!("/api/v1/runs/{newcomer}/cancel")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v = s.wait_run(newcomer, Duration::from_secs(10)).await;
    assert_eq!(v["run"]["conclusion"], "cancelled");
    s.server.stop().await;
}

/// The `hgr` claim (hangar's grant) of a runtime token, read without checking
/// it, as the toolkit reads its `scp` claim.
fn grant_of(runtime_token: &str) -> Value {
    use base64::Engine;
    let claims = runtime_token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["hgr"].clone()
}

/// Saves `key` through the cache service (Twirp v2) with a job's variables;
/// the HTTP status of the create call, and of finalize when it got that far.
async fn save_cache(http: &reqwest::Client, env: &Value, key: &str) -> (u16, Option<u16>) {
    let base = env["ACTIONS_RESULTS_URL"].as_str().unwrap();
    let token = env["ACTIONS_RUNTIME_TOKEN"].as_str().unwrap();
    let rpc = |m: &str| format!("{base}twirp/github.actions.results.api.v1.CacheService/{m}");
    let r = http
        .post(rpc("CreateCacheEntry"))
        .bearer_auth(token)
        .json(&json!({"key": key, "version": "v1"}))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    if code != 200 {
        return (code, None);
    }
    let v: Value = r.json().await.unwrap();
    let url = v["signed_upload_url"].as_str().unwrap();
    let put = http
        .put(url)
        .header("x-ms-blob-type", "BlockBlob")
        .body("poisoned")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let r = http
        .post(rpc("FinalizeCacheEntryUpload"))
        .bearer_auth(token)
        .json(&json!({"key": key, "version": "v1", "size_bytes": "8"}))
        .send()
        .await
        .unwrap();
    (code, Some(r.status().as_u16()))
}

async fn restore_cache(http: &reqwest::Client, env: &Value, key: &str) -> Value {
    let base = env["ACTIONS_RESULTS_URL"].as_str().unwrap();
    let token = env["ACTIONS_RUNTIME_TOKEN"].as_str().unwrap();
    http.post(format!(
        "{base}twirp/github.actions.results.api.v1.CacheService/GetCacheEntryDownloadURL"
    ))
    .bearer_auth(token)
    .json(&json!({"key": key, "version": "v1"}))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_forks_runtime_token_cannot_poison_the_default_branchs_cache() {
    let wf = "on: [push, pull_request]\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps: [{run: echo ok}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start_with(|c| c.embedded_capacity = 0).await;
    s.register("acme/app", repo.path()).await;
    let agent = s
        .agent_credential(
            new_token(&s, "remote-box", "agent", None).await["token"]
                .as_str()
                .unwrap(),
            "box-1",
        )
        .await;
    pull_request(&s, 3, &sha, "outsider/app", "CONTRIBUTOR").await;
    let fork = poll(&s, &agent, "box-1", 5000)
        .await
        .expect("the fork's job");
    let env = &fork["services_env"];
    let grant = grant_of(env["ACTIONS_RUNTIME_TOKEN"].as_str().unwrap());
    assert_eq!(grant["write_scope"], "refs/pull/3/head", "{grant:#}");
    // It saves (into its pull request's own scope)...
    assert_eq!(
        save_cache(&s.http, env, "deps-linux").await,
        (200, Some(200))
    );
    // ...which a push to main does not read: main's key stays unpoisoned.
    let (code, v) = s.push("acme/app", repo.path(), &sha, "main-1").await;
    assert_eq!(code, 202, "{v}");
    let main = poll(&s, &agent, "box-2", 5000).await.expect("main's job");
    let main_env = &main["services_env"];
    assert_eq!(
        grant_of(main_env["ACTIONS_RUNTIME_TOKEN"].as_str().unwrap())["write_scope"],
        "refs/heads/main"
    );
    let hit = restore_cache(&s.http, main_env, "deps-linux").await;
    assert_eq!(hit["ok"], false, "main restored the fork's entry: {hit}");
    // And main's own save of that key is not taken.
    assert_eq!(
        save_cache(&s.http, main_env, "deps-linux").await,
        (200, Some(200))
    );
    s.server.stop().await;
}

const DEPLOY_WORKFLOW: &str = r#"on: push
jobs:
  deploy:
    runs-on: ubuntu-latest
    environment: PRODUCTION
    steps: [{run: "echo ${{ secrets.DEPLOY_KEY }} ${{ secrets.REPO_KEY }} ${{ secrets.SERVER_KEY }} ${{ vars.REGION }}"}]
  build:
    runs-on: ubuntu-latest
    steps: [{run: "echo ${{ secrets.DEPLOY_KEY }} ${{ secrets.REPO_KEY }}"}]
"#;

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(15), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn environment_secrets_reach_only_a_job_that_passed_its_protection() {
    let (repo, sha) = repo_with(&[
        (".github/workflows/deploy.yml", DEPLOY_WORKFLOW),
        (
            "hangar.yml",
            "environments:\n  Production:\n    protection:\n      reviewers: [alice]\n",
        ),
    ]);
    let s = start_with(|c| c.embedded_capacity = 0).await;
    let id = s.register("acme/app", repo.path()).await;
    for (path, value) in [
        (
            format!("/api/v1/repos/{id}/environments/production/secrets/DEPLOY_KEY"),
            "env-level-secret-1",
        ),
        (
            format!("/api/v1/repos/{id}/environments/production/secrets/REPO_KEY"),
            "env-overrides-repo-2",
        ),
        (
            format!("/api/v1/repos/{id}/secrets/REPO_KEY"),
            "repo-level-secret-3",
        ),
        (
            "/api/v1/repos/0/secrets/SERVER_KEY".to_string(),
            "server-level-secret-4",
        ),
        (
            format!("/api/v1/repos/{id}/environments/Production/variables/REGION"),
            "eu-west-1",
        ),
    ] {
        let (code, v) = put_json(&s, &path, json!({"value": value})).await;
        assert_eq!(code, 204, "{path}: {v}");
    }
    let names = s
        .get(&format!(
            "/api/v1/repos/{id}/environments/PRODUCTION/secrets"
        ))
        .await;
    assert_eq!(
        names["names"],
        json!(["DEPLOY_KEY", "REPO_KEY"]),
        "names without case"
    );
    let agent = s
        .agent_credential(
            new_token(&s, "remote-box", "agent", None).await["token"]
                .as_str()
                .unwrap(),
            "box-1",
        )
        .await;
    // No push to main happened: the rules are read because the repository
    // was registered.
    let (code, v) = s.push("acme/app", repo.path(), &sha, "deploy-1").await;
    assert_eq!(code, 202, "{v}");
    let run = v["runs"][0].as_i64().unwrap();
    let job = |v: &Value, key: &str| {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .cloned()
            .unwrap()
    };
    wait_for("the deploy job waits for alice", async || {
        let v = s.get(&format!("/api/v1/runs/{run}")).await;
        job(&v, "deploy")["waiting_reason"]
            .as_str()
            .is_some_and(|r| r.contains("approval by a reviewer"))
    })
    .await;
    // The job without an environment: the repository's and the server's
    // secrets it names, not the environment's.
    let build = poll(&s, &agent, "box-1", 5000).await.expect("build");
    assert_eq!(build["job_key"], "build");
    assert_eq!(
        build["secrets"],
        json!({"REPO_KEY": "repo-level-secret-3"}),
        "{build:#}"
    );
    assert!(
        poll(&s, &agent, "box-1", 1000).await.is_none(),
        "deploy leased unapproved"
    );
    // alice's approval (here the administrator's) releases the environment's secrets.
    let pending = s.get("/api/v1/approvals").await;
    let approval = pending[0]["id"].as_i64().unwrap();
    let (code, v) = s
        .post(
            &format!("/api/v1/approvals/{approval}"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let deploy = poll(&s, &agent, "box-2", 5000).await.expect("deploy");
    assert_eq!(deploy["job_key"], "deploy");
    assert_eq!(
        deploy["secrets"],
        json!({"DEPLOY_KEY": "env-level-secret-1", "REPO_KEY": "env-overrides-repo-2",
               "SERVER_KEY": "server-level-secret-4"}),
        "{deploy:#}"
    );
    assert_eq!(deploy["vars"]["REGION"], "eu-west-1", "{deploy:#}");
    s.server.stop().await;
}

#[tokio::test]
async fn a_job_naming_an_environment_waits_while_the_rules_are_unread() {
    // HEAD names a branch that does not exist: the rules cannot be read at
    // registration, and a push to another branch must not run unprotected.
    let repo = hangar_testkit::empty_repo();
    git(repo.path(), &["checkout", "-q", "-b", "feature"]);
    let sha = hangar_testkit::commit(
        repo.path(),
        &[
            (".github/workflows/deploy.yml", DEPLOY_WORKFLOW),
            (
                "hangar.yml",
                "environments:\n  production:\n    protection:\n      reviewers: [alice]\n",
            ),
        ],
    );
    git(repo.path(), &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let s = start_with(|c| c.embedded_capacity = 0).await;
    s.register("acme/app", repo.path()).await;
    let body = serde_json::to_vec(&json!({
        "ref": "refs/heads/feature", "before": "0".repeat(40), "after": sha,
        "repository": {"full_name": "acme/app"}, "pusher": {"name": "t"},
    }))
    .unwrap();
    let (code, v) = s
        .hook("github", &body, &sign(&body), "feature-1", "push")
        .await;
    assert_eq!(code, 202, "{v}");
    let run = v["runs"][0].as_i64().unwrap();
    let agent = s
        .agent_credential(
            new_token(&s, "remote-box", "agent", None).await["token"]
                .as_str()
                .unwrap(),
            "box-1",
        )
        .await;
    let build = poll(&s, &agent, "box-1", 5000).await.expect("build runs");
    assert_eq!(build["job_key"], "build");
    assert!(
        poll(&s, &agent, "box-1", 2000).await.is_none(),
        "deploy ran unprotected"
    );
    let v = s.get(&format!("/api/v1/runs/{run}")).await;
    let deploy = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "deploy")
        .unwrap()
        .clone();
    assert_eq!(deploy["status"], "waiting", "{v:#}");
    assert!(
        deploy["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("has not been read yet"),
        "{deploy:#}"
    );
    s.server.stop().await;
}

#[tokio::test]
async fn a_secret_printed_as_base64_at_any_alignment_or_as_hex_is_masked_in_the_stored_log() {
    let wf = r#"on: push
jobs:
  leak:
    runs-on: ubuntu-latest
    steps:
      - run: |
          for p in '' x xy; do printf '%s%s' "$p" "$T" | base64; done
          printf '%s' "$T" | od -An -tx1 | tr -d ' \n'; echo
        env: {T: "${{ secrets.TOKEN }}"}
"#;
    let (repo, sha) = repo_with(&[(".github/workflows/leak.yml", wf)]);
    let s = start().await;
    let id = s.register("acme/app", repo.path()).await;
    let secret = "correct-horse-battery";
    let (code, _) = put_json(
        &s,
        &format!("/api/v1/repos/{id}/secrets/TOKEN"),
        json!({"value": secret}),
    )
    .await;
    assert_eq!(code, 204);
    let (code, v) = s.push("acme/app", repo.path(), &sha, "leak-1").await;
    assert_eq!(code, 202, "{v}");
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    let log = s.get_text(&format!("/api/v1/jobs/{job}/logs/raw")).await;
    use base64::Engine;
    let b64 = |p: &str| base64::engine::general_purpose::STANDARD.encode(format!("{p}{secret}"));
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    for leak in [b64(""), b64("x"), b64("xy"), hex] {
        // The middle of each encoding depends on the secret alone.
        let middle = &leak[4..leak.len() - 4];
        assert!(!log.contains(middle), "{middle} leaked:\n{log}");
    }
    assert!(log.matches("***").count() >= 4, "{log}");
    s.server.stop().await;
}
