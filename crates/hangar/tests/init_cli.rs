//! `hangar init`: a starter hangar.yml from what a project has, that
//! `hangar validate` accepts as written.

use std::path::Path;
use std::process::{Command, Output};

fn hangar(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_rust_and_node_project_gets_a_file_validate_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("src")).unwrap();
    std::fs::write(
        d.join("Cargo.toml"),
        "[package]\nname = \"billing_api\"\nversion = \"0.3.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(d.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        d.join("package.json"),
        r#"{"name": "@acme/web-ui", "scripts": {"build": "vite build", "start": "node server.js"}}"#,
    )
    .unwrap();
    std::fs::write(d.join("package-lock.json"), "{}").unwrap();

    let o = hangar(d, &["init"]);
    assert!(o.status.success(), "{}", text(&o));
    let written = std::fs::read_to_string(d.join("hangar.yml")).unwrap();
    assert!(written.contains("billing-api:"), "{written}");
    assert!(
        written.contains("run: './target/release/billing_api'"),
        "{written}"
    );
    assert!(written.contains("web-ui:"), "{written}");
    assert!(
        written.contains("build: 'npm ci && npm run build'"),
        "{written}"
    );
    assert!(text(&o).contains("hangar up dev"), "says what to try next");

    let v = hangar(d, &["validate", "hangar.yml"]);
    assert!(
        v.status.success(),
        "validate refused what init wrote:\n{}",
        text(&v)
    );

    // Never overwrites by surprise; --force does.
    let again = hangar(d, &["init"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    std::fs::write(d.join("hangar.yml"), "# mine\n").unwrap();
    let forced = hangar(d, &["init", "--force"]);
    assert!(forced.status.success(), "{}", text(&forced));
    assert!(
        std::fs::read_to_string(d.join("hangar.yml"))
            .unwrap()
            .contains("billing-api:")
    );
}

#[test]
fn a_procfile_names_the_services_and_print_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("Procfile"),
        "# processes\nweb: gunicorn app:app --bind 127.0.0.1:$PORT\nworker: celery -A tasks worker\n",
    )
    .unwrap();
    let o = hangar(d, &["init", "--print"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("  web:"), "{out}");
    assert!(out.contains("  worker:"), "{out}");
    assert!(
        out.contains("run: 'gunicorn app:app --bind 127.0.0.1:$PORT'"),
        "{out}"
    );
    assert!(!d.join("hangar.yml").exists());
}

#[test]
fn nothing_to_run_is_said_with_what_init_looks_for() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("README.md"), "# docs only\n").unwrap();
    let o = hangar(tmp.path(), &["init"]);
    assert_eq!(o.status.code(), Some(2));
    let t = text(&o);
    assert!(t.contains("found nothing to run"), "{t}");
    assert!(t.contains("Procfile"), "{t}");
    assert!(!tmp.path().join("hangar.yml").exists());
}

#[test]
fn a_broken_manifest_is_named_with_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("package.json"),
        "{\"scripts\": {\"start\": }}",
    )
    .unwrap();
    let o = hangar(tmp.path(), &["init"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("package.json:1:"), "{}", text(&o));
}
