//! Notifications end to end: a real server, real pushes, and a local receiver
//! standing in for Slack, Teams and a generic webhook.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const FAILING: &str = "name: ci\non: push\njobs:\n  check:\n    name: check S3CRET-VALUE-123\n    runs-on: ubuntu-latest\n    steps:\n      - run: exit 3\n";
const PASSING: &str = "name: ci\non: push\njobs:\n  check:\n    name: check S3CRET-VALUE-123\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo fine\n";

type Got = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

async fn receiver() -> (String, Got) {
    let got: Got = Default::default();
    let app = Router::new()
        .fallback(post(
            |State(g): State<Got>, uri: Uri, h: HeaderMap, b: Bytes| async move {
                g.lock().unwrap().push((uri.path().to_string(), h, b));
                "ok"
            },
        ))
        .with_state(got.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}"), got)
}

async fn wait_for(got: &Got, n: usize) -> Vec<(String, HeaderMap, Bytes)> {
    let start = Instant::now();
    loop {
        let g = got.lock().unwrap().clone();
        if g.len() >= n {
            return g;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} of {n} messages",
            g.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `acme/app` with a failing workflow whose job name carries the repository
/// secret `S3CRET-VALUE-123`: (checkout, commit, repository id).
async fn failing_repo_with_a_secret(s: &TestServer) -> (tempfile::TempDir, String, i64) {
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", FAILING)]);
    let id = s.register("acme/app", repo.path()).await;
    let r = s
        .http
        .put(s.url(&format!("/api/v1/repos/{id}/secrets/TOKEN")))
        .bearer_auth(&s.token)
        .json(&json!({"value": "S3CRET-VALUE-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    (repo, sha, id)
}

#[tokio::test]
async fn a_failed_run_and_its_fix_reach_slack_teams_and_a_signed_webhook_without_secrets() {
    let (url, got) = receiver().await;
    let s = start().await;
    let (repo, sha, id) = failing_repo_with_a_secret(&s).await;
    let events = json!(["run_failed", "run_fixed"]);
    for (channel, path, secret) in [
        ("slack", "/slack/T000/B000/XXXX", None),
        ("teams", "/teams/workflows/abc", None),
        ("webhook", "/hook", Some("hmac-key")),
    ] {
        let (code, v) = s
            .post(
                "/api/v1/notifications",
                json!({"repo_id": id, "events": events, "channel": channel, "url": format!("{url}{path}"), "secret": secret}),
            )
            .await;
        assert_eq!(code, 201, "{v}");
        assert!(
            !v.to_string().contains("XXXX"),
            "the URL is write-only: {v}"
        );
    }
    let (code, v) = s
        .post(
            "/api/v1/notifications",
            json!({"events": ["run_exploded"], "channel": "slack", "url": url}),
        )
        .await;
    assert_eq!(code, 422);
    assert!(v["error"].as_str().unwrap().contains("run_failed"), "{v}");

    let (_, v) = s.push("acme/app", repo.path(), &sha, "d-1").await;
    let run = v["runs"][0].as_i64().unwrap();
    assert_eq!(
        s.wait_run(run, Duration::from_secs(30)).await["run"]["conclusion"],
        "failure"
    );
    let msgs = wait_for(&got, 3).await;
    for (path, headers, body) in &msgs {
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains("S3CRET-VALUE-123"), "{path}: {text}");
        assert!(text.contains("ci failed: acme/app"), "{path}: {text}");
        assert!(
            text.contains(&format!("/ui/#/runs/{run}")),
            "{path}: {text}"
        );
        assert_eq!(headers["x-hangar-event"], "run_failed");
        let v: Value = serde_json::from_slice(body).unwrap();
        match path.as_str() {
            p if p.starts_with("/slack") => assert!(v["text"].is_string()),
            p if p.starts_with("/teams") => assert_eq!(
                v["attachments"][0]["contentType"],
                "application/vnd.microsoft.card.adaptive"
            ),
            _ => {
                assert_eq!(v["event"], "run_failed");
                assert_eq!(v["data"]["failed_jobs"][0], "check ***");
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hmac-key").unwrap();
                mac.update(body);
                let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                assert_eq!(headers["x-hangar-signature-256"], want.as_str());
            }
        }
    }

    // The next run of the workflow on the branch passes: "fixed".
    let sha2 = commit(repo.path(), &[(".github/workflows/ci.yml", PASSING)]).unwrap();
    let (_, v) = s.push("acme/app", repo.path(), &sha2, "d-2").await;
    let run2 = v["runs"][0].as_i64().unwrap();
    assert_eq!(
        s.wait_run(run2, Duration::from_secs(30)).await["run"]["conclusion"],
        "success"
    );
    let msgs = wait_for(&got, 6).await;
    let fixed: Vec<_> = msgs[3..]
        .iter()
        .map(|(_, h, b)| {
            (
                h["x-hangar-event"].clone(),
                String::from_utf8_lossy(b).into_owned(),
            )
        })
        .collect();
    for (event, text) in &fixed {
        assert_eq!(event, "run_fixed");
        assert!(text.contains("ci fixed: acme/app"), "{text}");
    }
    let log = s.get("/api/v1/outbound?kind=notification").await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 6, "{log:#?}");
    assert!(log.iter().all(|d| d["outcome"] == "delivered"));
    assert!(
        !serde_json::to_string(log).unwrap().contains("XXXX"),
        "{log:#?}"
    );
    s.server.stop().await;
}

/// A real SMTP server (aiosmtpd, from PyPI) on loopback, with STARTTLS required
/// and AUTH only over TLS, or plain; every message it accepts is appended to
/// `out` as a JSON line with whether TLS and AUTH were used.
const SMTP_SERVER: &str = r#"
import json, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
port, out, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Handler:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "a") as f:
            f.write(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                "data": envelope.content.decode("utf8", "replace"),
                "tls": session.ssl is not None, "auth": bool(session.authenticated)}) + "\n")
        return "250 OK"
def auth(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"ci" and data.password == b"p@ss word"
    return AuthResult(success=ok)
kw = {}
if cert != "-":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    kw = dict(tls_context=ctx, require_starttls=True, authenticator=auth,
              auth_require_tls=True, auth_required=True)
Controller(Handler(), hostname="127.0.0.1", port=port, **kw).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// Whether python3 with aiosmtpd and openssl are here; missing, the test is
/// skipped loudly, except under CI, where it fails.
fn have_smtp_tools() -> bool {
    let py = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    let openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if py && openssl {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python3 with aiosmtpd and openssl are required in CI (.ci/run installs them)"
    );
    eprintln!("SKIPPED: python3 -m aiosmtpd or openssl not found");
    false
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl.
fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=hangar test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
}

struct Smtp {
    child: std::process::Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_server(dir: &std::path::Path, name: &str, tls: bool) -> Smtp {
    use std::io::BufRead;
    let port = hangar_testkit::free_port();
    let out = dir.join(format!("{name}.jsonl"));
    let script = dir.join("smtp_server.py");
    std::fs::write(&script, SMTP_SERVER).unwrap();
    let (cert, key) = if tls {
        (
            dir.join("leaf.pem").display().to_string(),
            dir.join("leaf.key").display().to_string(),
        )
    } else {
        ("-".to_string(), "-".to_string())
    };
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(&out)
        .args([&cert, &key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
    Smtp { child, port, out }
}

fn mails(smtp: &Smtp) -> Vec<Value> {
    std::fs::read_to_string(&smtp.out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn e_mail_goes_over_starttls_with_auth_and_never_in_clear() {
    if !have_smtp_tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    make_certificates(tmp.path());
    let secure = smtp_server(tmp.path(), "secure", true);
    let plain = smtp_server(tmp.path(), "plain", false);
    let ca = tmp.path().join("ca.pem");
    let s = start_with(move |cfg| {
        cfg.smtp_ca_file = Some(ca);
        cfg.status_retry.first_backoff = Duration::from_millis(10);
    })
    .await;
    let (repo, sha, id) = failing_repo_with_a_secret(&s).await;
    let secure_url = format!(
        "smtp://ci:p%40ss%20word@127.0.0.1:{}?from=ci@hangar.test&to=dev@acme.test,ops@acme.test",
        secure.port
    );
    // A server that offers no STARTTLS is refused, never sent the message in clear.
    let plain_url = format!(
        "smtp://127.0.0.1:{}?from=ci@hangar.test&to=dev@acme.test",
        plain.port
    );
    for url in [&secure_url, &plain_url] {
        let (code, v) = s
            .post(
                "/api/v1/notifications",
                json!({"repo_id": id, "events": ["run_failed"], "channel": "email", "url": url}),
            )
            .await;
        assert_eq!(code, 201, "{v}");
        assert!(
            !v.to_string().contains("p%40ss"),
            "the password is write-only: {v}"
        );
    }
    // Credentials over a connection without TLS are refused when the rule is made.
    let (code, v) = s
        .post(
            "/api/v1/notifications",
            json!({"events": ["run_failed"], "channel": "email",
                   "url": format!("smtp://ci:pw@127.0.0.1:{}?from=a@b.test&to=c@d.test&tls=none", plain.port)}),
        )
        .await;
    assert_eq!(code, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("in clear"), "{v}");

    let (_, v) = s.push("acme/app", repo.path(), &sha, "d-1").await;
    let run = v["runs"][0].as_i64().unwrap();
    assert_eq!(
        s.wait_run(run, Duration::from_secs(30)).await["run"]["conclusion"],
        "failure"
    );
    let start = Instant::now();
    let log = loop {
        let log = s.get("/api/v1/outbound?kind=notification").await;
        if log.as_array().unwrap().len() >= 2 {
            break log;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{log:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mail = mails(&secure);
    assert_eq!(mail.len(), 1, "{mail:#?}");
    let m = &mail[0];
    assert_eq!(m["tls"], true, "STARTTLS was used");
    assert_eq!(m["auth"], true, "AUTH went over TLS");
    assert_eq!(m["to"], json!(["dev@acme.test", "ops@acme.test"]));
    let data = m["data"].as_str().unwrap();
    assert!(data.contains("Subject: ci failed: acme/app"), "{data}");
    assert!(data.contains(&format!("/ui/#/runs/{run}")), "{data}");
    assert!(!data.contains("S3CRET-VALUE-123"), "{data}");
    assert!(
        mails(&plain).is_empty(),
        "nothing reached the server without STARTTLS"
    );
    let by_target: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["target"].as_str().unwrap().to_string(),
                d["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        by_target.contains(&(
            format!("email 127.0.0.1:{}", secure.port),
            "delivered".into()
        )),
        "{by_target:?}"
    );
    assert!(
        by_target.contains(&(format!("email 127.0.0.1:{}", plain.port), "refused".into())),
        "{by_target:?}"
    );
    assert!(!log.to_string().contains("p%40ss"), "{log}");
    s.server.stop().await;
}

/// hangar.yml's `notifications:` name the secrets holding their URL and key.
const HANGAR_YML: &str = "environments:\n  ci:\n    protection: { branches: [main] }\nnotifications:\n  - events: [run_failed]\n    channel: webhook\n    url_secret: HOOK_URL\n    signing_secret: HOOK_KEY\n  - events: [run_failed]\n    channel: slack\n    url_secret: SLACK_URL_NOT_SET\n  - events: [run_fixed]\n    channel: slack\n    url_secret: HOOK_URL\n  - events: [run_failed]\n    channel: teams\n    url_secret: NOT_A_URL\n";

/// Waits for the job's environment, so the run starts after hangar.yml was read.
const FAILING_IN_ENV: &str = "name: ci\non: push\njobs:\n  check:\n    runs-on: ubuntu-latest\n    environment: ci\n    steps:\n      - run: exit 3\n";

#[tokio::test]
async fn rules_in_hangar_yml_deliver_through_the_secrets_they_name() {
    let (url, got) = receiver().await;
    let s = start().await;
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", FAILING_IN_ENV),
        ("hangar.yml", HANGAR_YML),
    ]);
    let id = s.register("acme/yml", repo.path()).await;
    for (name, value) in [
        ("HOOK_URL", format!("{url}/from-yml")),
        ("HOOK_KEY", "yml-hmac-key".to_string()),
        ("NOT_A_URL", "tok_S3CRET:not-a-url/x".to_string()),
    ] {
        let r = s
            .http
            .put(s.url(&format!("/api/v1/repos/{id}/secrets/{name}")))
            .bearer_auth(&s.token)
            .json(&json!({"value": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let (_, v) = s.push("acme/yml", repo.path(), &sha, "d-yml").await;
    let run = v["runs"][0].as_i64().unwrap();
    assert_eq!(
        s.wait_run(run, Duration::from_secs(30)).await["run"]["conclusion"],
        "failure"
    );
    let msgs = wait_for(&got, 1).await;
    let (path, headers, body) = &msgs[0];
    assert_eq!(path, "/from-yml");
    assert_eq!(headers["x-hangar-event"], "run_failed");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"yml-hmac-key").unwrap();
    mac.update(body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(headers["x-hangar-signature-256"], want.as_str());
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["event"], "run_failed");
    assert_eq!(v["run_id"], run);

    // The rule whose secret is not set is in the delivery log, refused, and
    // the run_fixed rule sent nothing.
    let start = Instant::now();
    let log = loop {
        let log = s.get("/api/v1/outbound?kind=notification").await;
        if log.as_array().unwrap().len() >= 3 {
            break log;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{log:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = log.as_array().unwrap();
    let refused = log
        .iter()
        .find(|d| d["subject"] == "hangar.yml notifications[1]")
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(refused["outcome"], "refused");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("SLACK_URL_NOT_SET"),
        "{refused}"
    );
    let sent = log
        .iter()
        .find(|d| d["subject"] == "hangar.yml notifications[0]")
        .unwrap();
    assert_eq!(sent["outcome"], "delivered");
    // A secret that is not a URL: refused, named, and its value nowhere.
    let not_url = log
        .iter()
        .find(|d| d["subject"] == "hangar.yml notifications[3]")
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(not_url["outcome"], "refused");
    assert!(
        not_url["error"].as_str().unwrap().contains("NOT_A_URL"),
        "{not_url}"
    );
    let text = serde_json::to_string(log).unwrap();
    assert!(
        !text.contains("tok_S3CRET") && !text.contains("not-a-url"),
        "{text}"
    );
    assert!(
        !serde_json::to_string(log).unwrap().contains("/from-yml"),
        "the URL is a credential: only its host is logged"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.lock().unwrap().len(), 1);
    s.server.stop().await;
}

#[tokio::test]
async fn a_watched_projects_alerts_reach_the_servers_channels() {
    let (url, got) = receiver().await;
    // A project whose environment's controller already announced an alert
    // before the server started: that one is not sent again.
    let (project, _) = repo_with(&[("README", "shop")]);
    let env_dir = project.path().join(".hangar/envs/prod");
    std::fs::create_dir_all(&env_dir).unwrap();
    let old = json!({"status": "firing", "env": "prod", "service": "web", "rule": "old", "summary": "before the server"});
    hangar_deploy::alerts::append_event(&env_dir, &old).unwrap();
    let s = start_with(|cfg| cfg.watch = vec![project.path().to_path_buf()]).await;
    let (code, v) = s
        .post(
            "/api/v1/notifications",
            json!({"events": ["alert_firing", "alert_resolved"], "channel": "webhook", "url": format!("{url}/hook"), "secret": "k"}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = s
        .post(
            "/api/v1/notifications",
            json!({"events": ["alert_firing"], "channel": "slack", "url": format!("{url}/slack")}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    // What the controller appends as an alert fires, then resolves.
    for status in ["firing", "resolved"] {
        let e = json!({"status": status, "env": "prod", "service": "web", "rule": "web-errors",
            "kind": "error_rate", "severity": "critical", "value": "43.0%", "threshold": "5%",
            "summary": format!("prod/web: error_rate {status}")});
        hangar_deploy::alerts::append_event(&env_dir, &e).unwrap();
    }
    let msgs = wait_for(&got, 3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let msgs_after = got.lock().unwrap().clone();
    assert_eq!(
        msgs_after.len(),
        3,
        "nothing more (the old alert is not re-sent)"
    );
    let hooks: Vec<Value> = msgs
        .iter()
        .filter(|(p, _, _)| p == "/hook")
        .map(|(_, h, b)| {
            let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(b"k").unwrap();
            mac.update(b);
            let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            assert_eq!(h["x-hangar-signature-256"], sig.as_str());
            serde_json::from_slice(b).unwrap()
        })
        .collect();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    let text = |v: &Value| v.to_string();
    assert!(text(&hooks[0]).contains("alert_firing"), "{}", hooks[0]);
    assert!(text(&hooks[0]).contains("web-errors"), "{}", hooks[0]);
    assert!(text(&hooks[1]).contains("alert_resolved"), "{}", hooks[1]);
    assert!(
        !msgs
            .iter()
            .any(|(_, _, b)| String::from_utf8_lossy(b).contains("before the server"))
    );
    let slack: Vec<String> = msgs
        .iter()
        .filter(|(p, _, _)| p == "/slack")
        .map(|(_, _, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(slack.len(), 1, "only firing goes to slack: {slack:?}");
    assert!(slack[0].contains("Alert web-errors firing"), "{}", slack[0]);
}
