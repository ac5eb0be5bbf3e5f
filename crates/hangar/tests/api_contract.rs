//! The OpenAPI document against the real thing: `openapi-spec-validator`
//! (PyPI) validates it, and `schemathesis` (PyPI) drives a live `hangar serve`
//! with requests generated from it, failing on any server error (5xx) and on
//! any response that breaks the document's own schema. Both tools come from
//! `.ci/python-requirements.txt`; without them the test fails under CI and
//! skips loudly elsewhere.

use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tool on PATH, or why the test cannot run.
fn tool(name: &str) -> Option<String> {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(name.to_string());
    }
    let why = format!(
        "`{name}` is not on PATH: `pip install -r .ci/python-requirements.txt` (into a venv on PATH) installs it"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// `hangar serve` on a free loopback port, no repository watched, no cron,
/// no embedded agent; its URL and the admin token it prints once.
fn serve(data: &std::path::Path) -> (Serve, String, String) {
    let mut child = Command::new(BIN)
        .current_dir(data)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--agent-capacity", "0", "--data"])
        .arg(data)
        // Registered clone URLs may only be local paths under an empty folder.
        .arg("--local-repos")
        .arg(data.join("repos"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let crate::common::Banner { url, token, .. } = crate::common::serve_banner(&mut child);
    (
        Serve(child),
        url,
        token.expect("a first start prints the admin token"),
    )
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_openapi_document_is_valid_and_the_server_keeps_to_it() {
    let (Some(validator), Some(st)) = (tool("openapi-spec-validator"), tool("st")) else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("repos")).unwrap();
    let (_serve, url, token) = serve(data.path());
    let doc = format!("{url}/api/v1/openapi.json");
    let fetched = data.path().join("openapi.json");
    // The validator reads a file: the document as served, with the token.
    let (ok, text) = run(Command::new("python3").args([
        "-c",
        "import sys, urllib.request as u; r = u.Request(sys.argv[1], headers={'Authorization': 'Bearer ' + sys.argv[2]}); open(sys.argv[3], 'wb').write(u.urlopen(r).read())",
        &doc,
        &token,
        fetched.to_str().unwrap(),
    ]));
    assert!(ok, "fetching {doc}: {text}");
    let (ok, text) = run(Command::new(&validator).arg(&fetched));
    assert!(ok, "openapi-spec-validator refused the document:\n{text}");

    // Bounded: a few examples per operation, one worker, a time budget.
    // Left out: the live stream (endless by design), the agent's long poll,
    // revoking tokens (it would revoke the token schemathesis uses), and the
    // routes that fetch from a clone URL (dispatch, workflows, webhooks),
    // which must not reach beyond loopback.
    let (ok, text) = run(Command::new(&st)
        .current_dir(data.path())
        .arg("run")
        .arg(&fetched)
        .args(["--url", &url])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
        ])
        .args([
            "--max-examples",
            "6",
            "--workers",
            "1",
            "--seed",
            "1",
            "--max-time",
            "120",
        ])
        .args(["--request-timeout", "10", "--no-shrink"])
        .args([
            "--exclude-path-regex",
            "/events$|/agent/poll$|/dispatch$|/workflows$|^/hooks/|^/api/v1/tokens/\\{id\\}$",
        ])
        .env("NO_COLOR", "1"));
    assert!(
        ok,
        "schemathesis found responses that break the document:\n{text}"
    );
    eprintln!(
        "{}",
        text.lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
