//! Every numeric field of hangar.yml, fed huge, negative, fractional and
//! non-numeric values: each is accepted or refused with a positioned error,
//! and nothing panics (durations go through `hangar_units`' checked parser).

const BASE: &str = r#"
services:
  api:
    run: ./api --port $PORT
    instances: {instances}
    health: { path: /health, interval: {interval}, timeout: {timeout}, healthy_threshold: {healthy_threshold}, unhealthy_threshold: {unhealthy_threshold}, start_period: {start_period}, deadline: {deadline} }
environments:
  dev:
    strategy: rolling
    keep_releases: {keep_releases}
    rolling: { max_surge: {max_surge}, max_unavailable: {max_unavailable} }
  prod:
    strategy: canary
    canary: { steps: [10, 50, 100], interval: {canary_interval}, max_error_rate: {rate}, min_requests: {min_requests}, step_deadline: {step_deadline} }
    protection: { reviewers: [ops], wait: {wait} }
"#;

const FIELDS: &[(&str, &str)] = &[
    ("instances", "2"),
    ("interval", "2s"),
    ("timeout", "1s"),
    ("healthy_threshold", "1"),
    ("unhealthy_threshold", "3"),
    ("start_period", "0s"),
    ("deadline", "60s"),
    ("keep_releases", "5"),
    ("max_surge", "1"),
    ("max_unavailable", "0"),
    ("canary_interval", "30s"),
    ("rate", "1%"),
    ("min_requests", "20"),
    ("step_deadline", "5m"),
    ("wait", "5m"),
];

const HOSTILE: &[&str] = &[
    "1e300",
    "-1e300",
    "1e18",
    "-1",
    "0",
    "0.5",
    "-0.5",
    "two",
    "''",
    ".nan",
    ".inf",
    "-.inf",
    "99999999999999999999999",
    "1e400",
    "'1e300s'",
    "'-5m'",
    "'9999999999999d'",
    "[1]",
    "{a: 1}",
    "null",
    "true",
];

fn document(field: &str, value: &str) -> String {
    FIELDS.iter().fold(BASE.to_string(), |doc, (name, good)| {
        let v = if *name == field { value } else { good };
        doc.replace(&format!("{{{name}}}"), v)
    })
}

#[test]
fn the_base_document_is_valid() {
    let text = document("", "");
    let p = hangar_project::parse("hangar.yml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(hangar_project::validate("hangar.yml", &p).is_empty());
}

#[test]
fn hostile_numbers_never_panic_and_errors_are_positioned() {
    for (field, _) in FIELDS {
        for value in HOSTILE {
            let text = document(field, value);
            let outcome =
                std::panic::catch_unwind(|| match hangar_project::parse("hangar.yml", &text) {
                    Ok(p) => {
                        let _ = hangar_project::validate("hangar.yml", &p);
                        None
                    }
                    Err(e) => Some(e.to_string()),
                });
            let Ok(err) = outcome else {
                panic!("{field}: {value} panicked");
            };
            if let Some(err) = err {
                assert!(err.starts_with("hangar.yml:"), "{field}: {value}: {err}");
            }
        }
    }
}

#[test]
fn durations_beyond_a_year_are_refused_where_written() {
    let err = hangar_project::parse("hangar.yml", &document("interval", "1e300"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("hangar.yml:6:"), "{err}");
    assert!(err.contains("too long"), "{err}");
}
