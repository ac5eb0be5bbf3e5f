//! End-to-end: a fixture OSV directory and lock files of every format, all
//! written by the test into a temp dir.

use std::fs;
use std::path::Path;

use hangar_advisories::{Options, scan};
use serde_json::json;

fn advisory(dir: &Path, id: &str, record: serde_json::Value) {
    let mut record = record;
    record["id"] = json!(id);
    record["modified"] = json!("2024-01-01T00:00:00Z");
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join(format!("{id}.json")),
        serde_json::to_string_pretty(&record).unwrap(),
    )
    .unwrap();
}

fn range(eco: &str, name: &str, kind: &str, events: serde_json::Value) -> serde_json::Value {
    json!({"package": {"ecosystem": eco, "name": name}, "ranges": [{"type": kind, "events": events}]})
}

fn fixture_db(root: &Path) -> std::path::PathBuf {
    let db = root.join("db");
    // crates.io, RustSec's osv-branch layout (crates/).
    advisory(
        &db.join("crates"),
        "RUSTSEC-2024-0001",
        json!({
            "aliases": ["CVE-2024-0001"], "summary": "smallvec overflow",
            "affected": [range("crates.io", "smallvec", "SEMVER", json!([{"introduced": "1.0.0"}, {"fixed": "1.6.1"}]))],
            "database_specific": {"severity": "high"}
        }),
    );
    // last_affected is inclusive.
    advisory(
        &db.join("crates"),
        "RUSTSEC-2024-0002",
        json!({
            "affected": [range("crates.io", "time", "SEMVER", json!([{"introduced": "0.2.0"}, {"last_affected": "0.2.22"}]))]
        }),
    );
    // Withdrawn advisories are ignored.
    advisory(
        &db.join("crates"),
        "RUSTSEC-2024-0003",
        json!({
            "withdrawn": "2024-02-01T00:00:00Z",
            "affected": [range("crates.io", "libc", "SEMVER", json!([{"introduced": "0"}]))]
        }),
    );
    advisory(
        &db.join("npm"),
        "GHSA-aaaa-bbbb-cccc",
        json!({
            "aliases": ["CVE-2021-23337"], "summary": "lodash command injection",
            "affected": [range("npm", "lodash", "SEMVER", json!([{"introduced": "0"}, {"fixed": "4.17.21"}]))],
            "database_specific": {"severity": "HIGH"}
        }),
    );
    advisory(
        &db.join("npm"),
        "GHSA-minimist",
        json!({
            "affected": [{"package": {"ecosystem": "npm", "name": "minimist"}, "versions": ["1.2.5"]}]
        }),
    );
    advisory(
        &db.join("pypi"),
        "PYSEC-2023-1",
        json!({
            "affected": [range("PyPI", "Django", "ECOSYSTEM", json!([{"introduced": "4.0"}, {"fixed": "4.1.0rc1"}]))],
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]
        }),
    );
    advisory(
        &db.join("go"),
        "GO-2023-0001",
        json!({
            "affected": [range("Go", "golang.org/x/net", "SEMVER", json!([{"introduced": "0"}, {"fixed": "0.7.0"}]))]
        }),
    );
    db
}

#[test]
fn matches_every_lock_format_with_boundaries() {
    let tmp = tempfile::tempdir().unwrap();
    let db = fixture_db(tmp.path());
    let proj = tmp.path().join("proj");
    fs::create_dir_all(proj.join("web")).unwrap();
    fs::create_dir_all(proj.join("legacy")).unwrap();
    fs::create_dir_all(proj.join("py")).unwrap();
    fs::create_dir_all(proj.join("svc")).unwrap();
    fs::write(
        proj.join("Cargo.lock"),
        r#"version = 3

[[package]]
name = "app"
version = "0.1.0"

[[package]]
name = "smallvec"
version = "1.6.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "time"
version = "0.2.22"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "libc"
version = "0.2.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#,
    )
    .unwrap();
    // v3: packages only. lodash at the fixed version is not affected.
    fs::write(
        proj.join("web/package-lock.json"),
        serde_json::to_string_pretty(&json!({
            "name": "web", "lockfileVersion": 3,
            "packages": {
                "": {"name": "web"},
                "node_modules/lodash": {"version": "4.17.21"},
                "node_modules/a/node_modules/lodash": {"version": "4.17.20"},
                "node_modules/minimist": {"version": "1.2.5"}
            }
        }))
        .unwrap(),
    )
    .unwrap();
    // v1: nested dependencies.
    fs::write(
        proj.join("legacy/package-lock.json"),
        serde_json::to_string_pretty(&json!({
            "name": "legacy", "lockfileVersion": 1,
            "dependencies": {
                "express": {"version": "4.0.0", "dependencies": {"lodash": {"version": "3.0.0"}}},
                "minimist": {"version": "1.2.6"}
            }
        }))
        .unwrap(),
    )
    .unwrap();
    fs::write(
        proj.join("py/requirements.txt"),
        "# deps\ndjango==4.0  # web\nrequests>=2\nflask\n",
    )
    .unwrap();
    fs::write(proj.join("py/poetry.lock"), "[[package]]\nname = \"Django\"\nversion = \"4.1.0\"\n\n[package.dependencies]\nasgiref = \"*\"\n\n[[package]]\nname = \"django\"\nversion = \"4.1rc1.dev0\"\n").unwrap();
    fs::write(proj.join("svc/go.sum"), "golang.org/x/net v0.6.0 h1:abc=\ngolang.org/x/net v0.6.0/go.mod h1:def=\ngolang.org/x/net v0.7.0 h1:ghi=\n").unwrap();

    let report = scan(&Options {
        path: proj.clone(),
        db,
        ignore_file: None,
        today: None,
    })
    .unwrap();
    let mut got: Vec<String> = report
        .vulnerabilities
        .iter()
        .map(|v| {
            let file = v.file.strip_prefix(&proj).unwrap().display().to_string();
            format!(
                "{} {} {} {}:{} fixed={:?}",
                v.advisory, v.package, v.version, file, v.line, v.fixed
            )
        })
        .collect();
    got.sort();
    let want = [
        "GHSA-aaaa-bbbb-cccc lodash 3.0.0 legacy/package-lock.json:8 fixed=Some(\"4.17.21\")",
        "GHSA-aaaa-bbbb-cccc lodash 4.17.20 web/package-lock.json:11 fixed=Some(\"4.17.21\")",
        "GHSA-minimist minimist 1.2.5 web/package-lock.json:14 fixed=None",
        "GO-2023-0001 golang.org/x/net v0.6.0 svc/go.sum:1 fixed=Some(\"0.7.0\")",
        "PYSEC-2023-1 django 4.0 py/requirements.txt:2 fixed=Some(\"4.1.0rc1\")",
        "PYSEC-2023-1 django 4.1rc1.dev0 py/poetry.lock:9 fixed=Some(\"4.1.0rc1\")",
        "RUSTSEC-2024-0001 smallvec 1.6.0 Cargo.lock:8 fixed=Some(\"1.6.1\")",
        "RUSTSEC-2024-0002 time 0.2.22 Cargo.lock:13 fixed=None",
    ];
    assert_eq!(got, want);
    let smallvec = report
        .vulnerabilities
        .iter()
        .find(|v| v.package == "smallvec")
        .unwrap();
    assert_eq!(smallvec.aliases, ["CVE-2024-0001"]);
    assert_eq!(smallvec.severity.as_deref(), Some("HIGH"));
    let django = report
        .vulnerabilities
        .iter()
        .find(|v| v.package == "django")
        .unwrap();
    assert!(django.severity.as_deref().unwrap().starts_with("CVSS:3.1/"));
    let unpinned: Vec<_> = report
        .unpinned
        .iter()
        .map(|p| (p.name.as_str(), p.line))
        .collect();
    assert_eq!(unpinned, [("requests", 3), ("flask", 4)]);
}

#[test]
fn package_lock_v2_prefers_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let db = fixture_db(tmp.path());
    let lock = tmp.path().join("package-lock.json");
    fs::write(
        &lock,
        serde_json::to_string_pretty(&json!({
            "lockfileVersion": 2,
            "packages": {"": {}, "node_modules/lodash": {"version": "4.17.0"}},
            "dependencies": {"lodash": {"version": "4.17.0"}}
        }))
        .unwrap(),
    )
    .unwrap();
    let report = scan(&Options {
        path: lock,
        db,
        ignore_file: None,
        today: None,
    })
    .unwrap();
    assert_eq!(report.vulnerabilities.len(), 1);
    assert_eq!(report.packages, 1);
}

#[test]
fn helpful_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let md = tmp.path().join("advisory-db/crates/foo");
    fs::create_dir_all(&md).unwrap();
    fs::write(
        md.join("RUSTSEC-2020-0001.md"),
        "```toml\n[advisory]\n```\n",
    )
    .unwrap();
    let err = scan(&Options {
        path: tmp.path().into(),
        db: tmp.path().join("advisory-db"),
        ignore_file: None,
        today: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("-b osv"), "{err}");

    let db = fixture_db(tmp.path());
    let lock = tmp.path().join("package-lock.json");
    fs::write(&lock, "{\n  \"packages\": oops\n}").unwrap();
    let err = scan(&Options {
        path: lock,
        db,
        ignore_file: None,
        today: None,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("package-lock.json:2:"), "{err}");
}

/// (lock file under `proj`, package, version, line) of every finding, sorted.
fn findings(
    report: &hangar_advisories::Report,
    proj: &Path,
) -> Vec<(String, String, String, usize)> {
    let mut got: Vec<_> = report
        .vulnerabilities
        .iter()
        .map(|v| {
            (
                v.file.strip_prefix(proj).unwrap().display().to_string(),
                v.package.clone(),
                v.version.clone(),
                v.line,
            )
        })
        .collect();
    got.sort();
    got
}

fn opts(path: &Path, db: &Path) -> Options {
    Options {
        path: path.to_path_buf(),
        db: db.to_path_buf(),
        ignore_file: None,
        today: Some("2026-12-04".into()),
    }
}

#[test]
fn informational_advisories_severity_levels_and_ignores() {
    use hangar_advisories::severity::Severity;
    let tmp = tempfile::tempdir().unwrap();
    let db = fixture_db(tmp.path());
    // RustSec's informational advisories (unmaintained) are warnings, as cargo-audit reports them.
    advisory(
        &db.join("crates"),
        "RUSTSEC-2024-0100",
        json!({
            "summary": "ansi_term is unmaintained",
            "affected": [{"package": {"ecosystem": "crates.io", "name": "ansi_term"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}],
                "database_specific": {"informational": "unmaintained"}}]
        }),
    );
    let proj = tmp.path().join("proj");
    fs::create_dir_all(&proj).unwrap();
    fs::write(
        proj.join("Cargo.lock"),
        "version = 3\n\n[[package]]\nname = \"ansi_term\"\nversion = \"0.12.1\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"time\"\nversion = \"0.2.10\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
    )
    .unwrap();
    let report = scan(&opts(&proj, &db)).unwrap();
    let ids = |it: Vec<&hangar_advisories::Vulnerability>| -> Vec<String> {
        let mut v: Vec<String> = it.iter().map(|v| v.advisory.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(report.vulnerabilities.iter().collect()),
        [
            "RUSTSEC-2024-0001",
            "RUSTSEC-2024-0002",
            "RUSTSEC-2024-0100"
        ]
    );
    assert_eq!(
        ids(report.vulnerable().collect()),
        ["RUSTSEC-2024-0001", "RUSTSEC-2024-0002"],
        "informational advisories are not vulnerabilities"
    );
    // Seed 001's gate: high and above; an advisory with no severity still counts.
    assert_eq!(
        ids(report.at_least(Severity::High).collect()),
        ["RUSTSEC-2024-0001", "RUSTSEC-2024-0002"]
    );
    assert_eq!(
        ids(report.at_least(Severity::Critical).collect()),
        ["RUSTSEC-2024-0002"]
    );
    assert_eq!(
        ids(report.at_least(Severity::Informational).collect()).len(),
        3
    );
    // Only crates.io was loaded for a Cargo.lock (npm, PyPI and Go are not).
    assert_eq!(report.advisories, 3);

    // osv-scanner.toml beside the lock file: a reason and an expiry.
    fs::write(
        proj.join("osv-scanner.toml"),
        "[[IgnoredVulns]]\nid = \"CVE-2024-0001\"\nignoreUntil = 2027-01-31\nreason = \"not reachable: we never call insert_many\"\n\n[[IgnoredVulns]]\nid = \"RUSTSEC-2024-0002\"\nignoreUntil = 2026-01-01\nreason = \"old\"\n\n[[IgnoredVulns]]\nid = \"RUSTSEC-2024-0100\"\n",
    )
    .unwrap();
    let report = scan(&opts(&proj, &db)).unwrap();
    assert_eq!(ids(report.vulnerable().collect()), ["RUSTSEC-2024-0002"]);
    let ignored: Vec<(&str, &str)> = report
        .ignored
        .iter()
        .map(|(v, r)| (v.advisory.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        ignored,
        [
            ("RUSTSEC-2024-0100", "no reason given"),
            (
                "RUSTSEC-2024-0001",
                "not reachable: we never call insert_many (until 2027-01-31)"
            ),
        ]
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("RUSTSEC-2024-0002 expired on 2026-01-01")),
        "{:?}",
        report.warnings
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("RUSTSEC-2024-0100 gives no reason"))
    );
    fs::write(
        proj.join("osv-scanner.toml"),
        "[[IgnoredVulns]]\nreason = \"x\"\n",
    )
    .unwrap();
    let err = scan(&opts(&proj, &db)).unwrap_err().to_string();
    assert!(err.contains("has no `id`"), "{err}");
}

#[test]
fn lock_file_discovery_go_mod_selection_and_nested_npm_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let db = fixture_db(tmp.path());
    let proj = tmp.path().join("proj");
    let w = |p: &str, t: &str| {
        let f = proj.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, t).unwrap();
    };
    // The README's names: requirements-*.txt, requirements/*.txt, npm-shrinkwrap.json.
    w("requirements-dev.txt", "Django==4.0.1\n");
    w("requirements/base.txt", "django==4.0.2\n");
    w("requirements/notes.md", "Django==4.0.0\n");
    w(
        "web/npm-shrinkwrap.json",
        "{\n  \"lockfileVersion\": 1,\n  \"dependencies\": {\n    \"lodash\": {\n      \"version\": \"4.17.20\"\n    },\n    \"a\": {\n      \"version\": \"1.0.0\",\n      \"dependencies\": {\n        \"lodash\": {\n          \"version\": \"4.17.4\"\n        }\n      }\n    }\n  }\n}\n",
    );
    // go.sum lists x/net 0.1.0 (from the module graph) and 0.6.0; go.mod selects 0.6.0.
    w(
        "svc/go.mod",
        "module example.com/svc\n\ngo 1.21\n\nrequire (\n\tgolang.org/x/net v0.6.0 // indirect\n)\n",
    );
    w(
        "svc/go.sum",
        "golang.org/x/net v0.1.0 h1:a=\ngolang.org/x/net v0.1.0/go.mod h1:b=\ngolang.org/x/net v0.6.0 h1:c=\ngolang.org/x/net v0.6.0/go.mod h1:d=\n",
    );
    let report = scan(&opts(&proj, &db)).unwrap();
    let names: Vec<String> = report
        .lock_files
        .iter()
        .map(|f| f.strip_prefix(&proj).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "requirements",
            "requirements-dev.txt",
            "svc/go.sum",
            "web/npm-shrinkwrap.json"
        ]
        .iter()
        .map(|s| if *s == "requirements" {
            "requirements/base.txt".to_string()
        } else {
            s.to_string()
        })
        .collect::<Vec<_>>()
    );
    let mut got: Vec<(String, String, usize)> = report
        .vulnerabilities
        .iter()
        .map(|v| (v.package.clone(), v.version.clone(), v.line))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("Django".to_string(), "4.0.1".to_string(), 1),
            ("django".to_string(), "4.0.2".to_string(), 1),
            // Only the version go.mod selects.
            ("golang.org/x/net".to_string(), "v0.6.0".to_string(), 3),
            // Each copy of lodash on its own line.
            ("lodash".to_string(), "4.17.20".to_string(), 4),
            ("lodash".to_string(), "4.17.4".to_string(), 10),
        ]
    );
}

#[test]
fn yarn_pnpm_pipfile_and_uv_lock_files() {
    let tmp = tempfile::tempdir().unwrap();
    let db = fixture_db(tmp.path());
    let proj = tmp.path().join("proj");
    let w = |p: &str, t: &str| {
        let f = proj.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, t).unwrap();
    };
    w(
        "classic/yarn.lock",
        "# yarn lockfile v1\n\n\n\"@babel/code-frame@^7.0.0\", \"@babel/code-frame@^7.10.4\":\n  version \"7.12.13\"\n\nlodash@^4.17.15:\n  version \"4.17.20\"\n  resolved \"https://registry.yarnpkg.com/lodash/-/lodash-4.17.20.tgz\"\n",
    );
    w(
        "berry/yarn.lock",
        "__metadata:\n  version: 6\n\n\"app@workspace:.\":\n  version: 0.0.0-use.local\n\n\"minimist@npm:^1.2.0\":\n  version: 1.2.5\n  resolution: \"minimist@npm:1.2.5\"\n",
    );
    w(
        "pnpm/pnpm-lock.yaml",
        "lockfileVersion: '9.0'\n\nimporters:\n  .:\n    dependencies:\n      lodash:\n        specifier: ^4\n        version: 4.17.19\n\npackages:\n\n  lodash@4.17.19:\n    resolution: {integrity: sha512-x}\n\n  '@types/node@20.1.0':\n    resolution: {integrity: sha512-y}\n\nsnapshots:\n\n  lodash@4.17.19: {}\n",
    );
    w(
        "pipenv/Pipfile.lock",
        "{\n  \"_meta\": {},\n  \"default\": {\n    \"django\": {\n      \"version\": \"==4.0.3\"\n    }\n  },\n  \"develop\": {}\n}\n",
    );
    w(
        "uv/uv.lock",
        "version = 1\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\nsource = { editable = \".\" }\n\n[[package]]\nname = \"django\"\nversion = \"4.0.4\"\nsource = { registry = \"https://pypi.org/simple\" }\n",
    );
    let report = scan(&opts(&proj, &db)).unwrap();
    let got = findings(&report, &proj);
    let want: Vec<(String, String, String, usize)> = [
        ("berry/yarn.lock", "minimist", "1.2.5", 7),
        ("classic/yarn.lock", "lodash", "4.17.20", 7),
        ("pipenv/Pipfile.lock", "django", "4.0.3", 4),
        ("pnpm/pnpm-lock.yaml", "lodash", "4.17.19", 12),
        ("uv/uv.lock", "django", "4.0.4", 9),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d))
    .collect();
    assert_eq!(got, want);
    // Every registry package was read (the local app entries were not).
    assert_eq!(report.packages, 7);
}

#[test]
fn sbom_lists_every_pinned_package_once() {
    let tmp = tempfile::tempdir().unwrap();
    let db = fixture_db(tmp.path());
    let proj = tmp.path().join("proj");
    fs::create_dir_all(proj.join("web")).unwrap();
    fs::write(
        proj.join("requirements.txt"),
        "Django_Rest==3.0\nflask>=2\n",
    )
    .unwrap();
    fs::write(
        proj.join("web/yarn.lock"),
        "\"@babel/core@^7\":\n  version \"7.1.0\"\n\n\"@babel/core@^7.1\":\n  version \"7.1.0\"\n",
    )
    .unwrap();
    let report = scan(&opts(&proj, &db)).unwrap();
    let bom = hangar_advisories::sbom::cyclonedx(&report.pinned, "0.1.0");
    assert_eq!(bom["bomFormat"], "CycloneDX");
    let purls: Vec<&str> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["purl"].as_str().unwrap())
        .collect();
    assert_eq!(
        purls,
        ["pkg:pypi/django-rest@3.0", "pkg:npm/%40babel/core@7.1.0"]
    );
}

#[test]
fn gradle_composer_and_gemfile_lock_files() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("osv");
    // Ranges as OSV's exports give them (ECOSYSTEM ranges ordered by each
    // ecosystem's own rules: Maven's `2.0-beta9` is below `2.14.1`).
    advisory(
        &db.join("Maven"),
        "GHSA-jfh8-c2jp-5v3q",
        json!({"affected": [range("Maven", "org.apache.logging.log4j:log4j-core", "ECOSYSTEM",
            json!([{"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}]))],
            "database_specific": {"severity": "CRITICAL"}}),
    );
    advisory(
        &db.join("RubyGems"),
        "GHSA-2qc6-mcvw-92cw",
        json!({"affected": [range("RubyGems", "nokogiri", "ECOSYSTEM",
            json!([{"introduced": "0"}, {"fixed": "1.13.10"}]))]}),
    );
    advisory(
        &db.join("Packagist"),
        "GHSA-q559-8m2m-g699",
        json!({"affected": [range("Packagist", "guzzlehttp/guzzle", "ECOSYSTEM",
            json!([{"introduced": "7.0.0"}, {"fixed": "7.4.5"}]))]}),
    );
    let proj = tmp.path().join("proj");
    let w = |p: &str, t: &str| {
        let f = proj.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, t).unwrap();
    };
    w(
        "java/gradle.lockfile",
        "# This is a Gradle generated file for dependency locking.\n# Manual edits can break the build and are not advised.\n# This file is expected to be part of source control.\ncom.google.guava:guava:31.1-jre=compileClasspath,runtimeClasspath\norg.apache.logging.log4j:log4j-core:2.14.1=runtimeClasspath\norg.apache.logging.log4j:log4j-api:2.14.1=runtimeClasspath\nempty=annotationProcessor\n",
    );
    w(
        "php/composer.lock",
        "{\n    \"_readme\": [\"This file locks the dependencies of your project to a known state\"],\n    \"content-hash\": \"x\",\n    \"packages\": [\n        {\n            \"name\": \"guzzlehttp/guzzle\",\n            \"version\": \"7.4.4\"\n        },\n        {\n            \"name\": \"monolog/monolog\",\n            \"version\": \"dev-main\"\n        }\n    ],\n    \"packages-dev\": [\n        {\n            \"name\": \"Guzzlehttp/Guzzle\",\n            \"version\": \"v7.4.5\"\n        }\n    ]\n}\n",
    );
    w(
        "ruby/Gemfile.lock",
        "GIT\n  remote: https://github.com/example/forked.git\n  revision: 0123456789abcdef0123456789abcdef01234567\n  specs:\n    nokogiri (1.0.0)\n\nGEM\n  remote: https://rubygems.org/\n  specs:\n    mini_portile2 (2.8.0)\n    nokogiri (1.13.9-x86_64-linux)\n      racc (~> 1.4)\n    racc (1.6.0)\n    rack (2.2.8)\n\nPLATFORMS\n  x86_64-linux\n\nDEPENDENCIES\n  nokogiri\n\nBUNDLED WITH\n   2.3.26\n",
    );
    let report = scan(&opts(&proj, &db)).unwrap();
    let got = findings(&report, &proj);
    let want: Vec<(String, String, String, usize)> = [
        (
            "java/gradle.lockfile",
            "org.apache.logging.log4j:log4j-core",
            "2.14.1",
            5,
        ),
        ("php/composer.lock", "guzzlehttp/guzzle", "7.4.4", 6),
        ("ruby/Gemfile.lock", "nokogiri", "1.13.9", 11),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d))
    .collect();
    assert_eq!(
        got, want,
        "the git-sourced nokogiri and the fixed guzzle are not findings"
    );
    // 3 gradle + 3 composer (one a branch install, unpinned) + 4 gems; not the git gem.
    assert_eq!(report.packages, 10);
    assert_eq!(report.unpinned.len(), 1);
    assert_eq!(report.unpinned[0].name, "monolog/monolog");
    let sbom = hangar_advisories::sbom::cyclonedx(&report.pinned, "test");
    let purls: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["purl"].as_str().unwrap())
        .collect();
    assert!(
        purls.contains(&"pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"),
        "{purls:?}"
    );
    assert!(purls.contains(&"pkg:gem/nokogiri@1.13.9"), "{purls:?}");
    assert!(
        purls.contains(&"pkg:composer/guzzlehttp/guzzle@7.4.4"),
        "{purls:?}"
    );
}

/// A broken gradle.lockfile, composer.lock or Gemfile.lock stops the scan with
/// the file, line and column and what to do: a dependency the reader skipped
/// would be one the gate silently passes.
#[test]
fn broken_gradle_composer_and_gemfile_lock_files_are_errors_at_their_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "gradle.lockfile",
            "# generated\ncom.google.guava:guava:31.1-jre=compileClasspath\n  org.apache.logging.log4j:log4j-core=runtimeClasspath\n",
            "gradle.lockfile:3:3: not a Gradle lock entry",
        ),
        (
            "gradle.lockfile",
            "com.google.guava:guava:=compileClasspath\n",
            "gradle.lockfile:1:1: a Gradle lock entry with an empty group, artifact or version",
        ),
        (
            "composer.lock",
            "{\n  \"packages\": [\n    {\"name\": \"a/b\", \"version\": \"1.0.0\"},\n",
            "composer.lock:4:",
        ),
        (
            "composer.lock",
            "{\n  \"packages\": {\"name\": \"a/b\"}\n}\n",
            "composer.lock:2: `packages` is not a list of packages",
        ),
        (
            "composer.lock",
            "{\n  \"packages\": [{\"version\": \"1.0.0\"}]\n}\n",
            "composer.lock: `packages[0]` has no `name`",
        ),
        (
            "Gemfile.lock",
            "GEM\n  remote: https://rubygems.org/\n  specs:\n    rack (2.2.8)\n    nokogiri 1.13.9\n\nDEPENDENCIES\n  rack\n",
            "Gemfile.lock:5:5: not a gem spec: `nokogiri 1.13.9`",
        ),
        (
            "Gemfile.lock",
            "this is not a lock file\n",
            "Gemfile.lock:1:1: none of Bundler's sections",
        ),
    ];
    for (name, text, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("osv");
        for (eco, package) in [("Maven", "g:a"), ("Packagist", "a/b"), ("RubyGems", "rack")] {
            advisory(
                &db.join(eco),
                &format!("GHSA-{eco}"),
                json!({"affected": [range(eco, package, "ECOSYSTEM",
                    json!([{"introduced": "0"}, {"fixed": "99"}]))]}),
            );
        }
        let proj = tmp.path().join("proj");
        fs::create_dir_all(&proj).unwrap();
        fs::write(proj.join(name), text).unwrap();
        let err = match scan(&opts(&proj, &db)) {
            Ok(report) => panic!("{name} {text:?}: scanned without error: {report:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(want), "{name}: {err}");
        assert!(err.contains("help:") || *name == "composer.lock", "{err}");
    }
}
