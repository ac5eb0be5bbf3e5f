//! Reading gitleaks-format configuration: gitleaks' own 222-rule file, our
//! defaults, extension, and the errors a broken file gets.

mod common;

use common::shared;

use hangar_secrets::config::{Source, load};
use hangar_secrets::detect::{Fragment, Scratch};
use hangar_secrets::{Finding, RuleSet, default_rules, load_file};

fn findings(rules: &RuleSet, path: &str, text: &str) -> Vec<Finding> {
    rules.scan(
        &Fragment {
            path,
            text: text.as_bytes(),
            commit: None,
            line_numbers: None,
        },
        &mut Scratch::default(),
    )
}

fn rules_found(rules: &RuleSet, path: &str, text: &str) -> Vec<String> {
    findings(rules, path, text)
        .into_iter()
        .map(|f| f.rule_id)
        .collect()
}

fn from(text: &str) -> Result<RuleSet, String> {
    load(&Source {
        name: "test.toml",
        text,
        dir: None,
    })
    .map_err(|e| e.to_string())
}

#[test]
fn gitleaks_own_configuration_loads_and_detects() {
    let Some(shared) = shared() else { return };
    let rules = load_file(&shared.join("conformance/secrets/gitleaks/gitleaks.toml")).unwrap();
    assert_eq!(rules.rules.len(), 222);
    let text = "token = \"ghp_x8Kq2mZ0rT4vW9bN3cY7dF1gH5jL6pQ0sA2e\"\naws = AKIAZ7X4Q2M3N5P6R7T2\n"; // hangar:allow (a fake credential for the test)
    let found = rules_found(&rules, "src/app.py", text);
    assert!(found.iter().any(|r| r == "github-pat"), "{found:?}");
    assert!(found.iter().any(|r| r == "aws-access-token"), "{found:?}");
    // Its global allowlist drops lock files and its per-rule allowlists the documentation key.
    assert!(rules_found(&rules, "package-lock.json", text).is_empty());
    assert!(rules_found(&rules, "a.txt", "AKIAIOSFODNN7EXAMPLE\n").is_empty());
}

#[test]
fn default_rules_compile_with_unique_ids_and_lowercase_keywords() {
    let rules = default_rules();
    let mut ids: Vec<&str> = rules.rules.iter().map(|r| r.id.as_str()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate rule ids");
    assert!(n >= 40, "only {n} default rules");
    for r in &rules.rules {
        assert!(!r.description.is_empty(), "{} has no description", r.id);
    }
}

#[test]
fn extend_use_default_adds_rules_and_disables_others() {
    let rules = from(
        r#"
[extend]
useDefault = true
disabledRules = ["jwt"]

[[rules]]
id = "internal-token"
description = "ACME internal token"
regex = '''\b(acme_[a-z0-9]{24})\b'''
keywords = ["acme_"]
"#,
    )
    .unwrap();
    let found = rules_found(
        &rules,
        "a.env",
        "T=acme_q8w7e6r5t4y3u2i1o9p0a1s2\nG=ghp_x8Kq2mZ0rT4vW9bN3cY7dF1gH5jL6pQ0sA2e\nJ=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\n", // hangar:allow (a fake credential for the test)
    );
    assert_eq!(found, vec!["internal-token", "github-pat"]);
}

#[test]
fn allowlists_follow_gitleaks_semantics() {
    let rules = from(
        r#"
[[rules]]
id = "k"
regex = '''key_([a-z0-9]{8})'''
[[rules.allowlists]]
regexTarget = "line"
regexes = ['''fixture''']
[[rules.allowlists]]
condition = "AND"
paths = ['''^docs/''']
stopwords = ["0000"]

[allowlist]
paths = ['''^vendor/''']
"#,
    )
    .unwrap();
    assert_eq!(rules_found(&rules, "a.rs", "key_ab12cd34\n"), vec!["k"]);
    assert!(rules_found(&rules, "a.rs", "key_ab12cd34 // fixture\n").is_empty());
    assert!(rules_found(&rules, "vendor/x.rs", "key_ab12cd34\n").is_empty());
    // AND: both the path and the stopword must match.
    assert_eq!(
        rules_found(&rules, "docs/a.md", "key_ab12cd34\n"),
        vec!["k"]
    );
    assert!(rules_found(&rules, "docs/a.md", "key_ab000034\n").is_empty());
    assert_eq!(rules_found(&rules, "src/a.md", "key_ab000034\n"), vec!["k"]);
    // Inline markers.
    assert!(rules_found(&rules, "a.rs", "key_ab12cd34 # gitleaks:allow\n").is_empty());
    assert!(rules_found(&rules, "a.rs", "key_ab12cd34 // hangar:allow\n").is_empty());
}

#[test]
fn secret_group_and_entropy() {
    let rules = from(
        r#"
[[rules]]
id = "pw"
regex = '''(pw)=([A-Za-z0-9]+)'''
secretGroup = 2
entropy = 3.0
"#,
    )
    .unwrap();
    let scan = |t: &str| findings(&rules, "x", t);
    let f = scan("\n  pw=Zx8qL2mN0rT4\n");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].secret, "Zx8qL2mN0rT4");
    assert_eq!((f[0].line, f[0].column), (2, 6));
    assert!(
        scan("pw=aaaaaaaaaaaa\n").is_empty(),
        "low entropy is not a secret"
    );
}

#[test]
fn broken_configuration_errors_name_the_place() {
    let e = from("[[rules]]\nid = \"x\"\nregex = '''(unclosed'''\n").unwrap_err();
    assert!(e.starts_with("test.toml:3:9:"), "{e}");
    assert!(e.contains("does not compile"), "{e}");

    let e = from("[[rules]]\nid = \"x\"\nregex = 'a'\nsecretgroup = 1\n").unwrap_err();
    assert!(e.starts_with("test.toml:4:1:"), "{e}");
    assert!(e.contains("secretgroup"), "{e}");

    let e = from("[[rules]]\nid = \"x\"\nregex = 'a(b)'\nsecretGroup = 3\n").unwrap_err();
    assert!(e.contains("secretGroup = 3"), "{e}");

    let e = from("[[rules]]\nid = \"x\"\n").unwrap_err();
    assert!(e.contains("neither `regex` nor `path`"), "{e}");

    let e = from("[extend]\nurl = \"https://example.com/x.toml\"\n").unwrap_err();
    assert!(e.contains("offline"), "{e}");
}
