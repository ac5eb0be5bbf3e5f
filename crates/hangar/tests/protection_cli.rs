//! `hangar deploy|rollback|promote` honour an environment's `protection:`:
//! with reviewers or a wait timer and no server, they refuse and say both
//! ways on; `--override-protection --reason` proceeds and the override is in
//! the environment's history. A real service, the built binary.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::free_port;

fn hangar(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hangar"));
    c.args(args).arg("--dir").arg(dir);
    // No server from the caller's environment.
    c.env_remove("HANGAR_SERVER").env_remove("HANGAR_TOKEN");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = hangar(self.0, &["down", "prod"], &[]);
    }
}

#[test]
fn a_protected_environment_is_refused_unless_overridden_on_the_record() {
    if !common::have_python3() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            r#"services:
  web:
    run: python3 -m http.server $PORT --bind 127.0.0.1
    health: {{ path: /, interval: 100ms, timeout: 1s, deadline: 20s }}
    stop: {{ drain: 50ms, timeout: 2s }}
environments:
  prod:
    listen: {{ web: 127.0.0.1:{port} }}
    protection: {{ reviewers: [sre], wait: 1m }}
"#
        ),
    )
    .unwrap();
    let _down = Down(dir);
    for cmd in [
        &["deploy", "prod", "--no-build"][..],
        &["rollback", "prod"],
        &["promote", "prod"],
    ] {
        let o = hangar(dir, cmd, &[]);
        let t = text(&o);
        assert!(!o.status.success(), "{cmd:?}: {t}");
        assert!(
            t.contains("environment `prod` is protected (reviewers: sre; wait: 60s)"),
            "{cmd:?}: {t}"
        );
        assert!(t.contains("--server URL"), "{t}");
        assert!(t.contains("--override-protection --reason"), "{t}");
    }
    // Nothing was started or recorded.
    assert!(!dir.join(".hangar/envs/prod/history.jsonl").exists());
    assert!(!dir.join(".hangar/envs/prod/control.sock").exists());

    // An override needs its reason.
    let o = hangar(dir, &["deploy", "prod", "--override-protection"], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--reason"), "{}", text(&o));

    let o = hangar(
        dir,
        &[
            "deploy",
            "prod",
            "--no-build",
            "--override-protection",
            "--reason",
            "incident 42: the server is down",
        ],
        &[("HANGAR_ACTOR", "ops-oncall")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("overridden by ops-oncall"),
        "{}",
        text(&o)
    );
    let o = hangar(dir, &["history", "prod"], &[]);
    let t = text(&o);
    assert!(
        t.contains("protection overridden by ops-oncall for `deploy` (reviewers: sre; wait: 60s): incident 42: the server is down"),
        "{t}"
    );
    assert!(
        t.contains("succeeded"),
        "the deployment itself is there too: {t}"
    );
}
