use hangar_project::{StrategyKind, parse};

const GOOD: &str = r#"
services:
  api:
    build: cargo build --release
    run: ./target/release/api --port $PORT
    health: { path: /health, interval: 2s, timeout: 1s }
    instances: 2
    depends_on: [db]
  db:
    run: postgres -D $HANGAR_DATA/pg -p $PORT
    health: { tcp: true }
environments:
  dev:     { strategy: rolling }
  staging: { strategy: blue-green }
  prod:
    strategy: canary
    canary: { steps: [10, 50, 100], interval: 30s, max_error_rate: 1%, max_p95: 200ms }
    protection: { reviewers: [ops], wait: 5m, branches: [main] }
"#;

#[test]
fn the_product_sketch_parses() {
    let p = parse("hangar.yml", GOOD).unwrap();
    assert_eq!(p.services["api"].value.instances, 2);
    assert_eq!(p.services_in_order(None), vec!["db", "api"]);
    let prod = &p.environments["prod"].value;
    assert_eq!(prod.strategy.value, StrategyKind::Canary);
    let canary = prod.canary.as_ref().unwrap();
    assert_eq!(canary.steps.value, vec![10, 50, 100]);
    assert_eq!(canary.max_error_rate.unwrap().0, 0.01);
    assert_eq!(canary.max_p95.unwrap().0.as_millis(), 200);
}

#[test]
fn unknown_key_is_positioned() {
    let text = "services:\n  api:\n    run: x\n    helth: {path: /}\n";
    let err = parse("hangar.yml", text).unwrap_err().to_string();
    assert!(err.starts_with("hangar.yml:4:"), "{err}");
    assert!(err.contains("helth"), "{err}");
}

#[test]
fn unknown_dependency_suggests_a_name() {
    let text = "services:\n  api:\n    run: x\n    depends_on: [dbb]\n  db:\n    run: y\n";
    let err = parse("hangar.yml", text).unwrap_err().to_string();
    assert!(err.starts_with("hangar.yml:4:"), "{err}");
    assert!(
        err.contains("unknown service `dbb`") && err.contains("did you mean `db`"),
        "{err}"
    );
}

#[test]
fn dependency_cycle_is_named() {
    let text =
        "services:\n  a:\n    run: x\n    depends_on: [b]\n  b:\n    run: y\n    depends_on: [a]\n";
    let err = parse("hangar.yml", text).unwrap_err().to_string();
    assert!(err.contains("a -> b -> a"), "{err}");
}

#[test]
fn bad_duration_and_strategy() {
    let err = parse(
        "hangar.yml",
        "services:\n  a:\n    run: x\n    health: {path: /h, interval: 2x}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("hangar.yml:4:") && err.contains("unknown unit"),
        "{err}"
    );
    let err = parse("hangar.yml", "environments:\n  prod: {strategy: canary}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("without a `canary:` section"), "{err}");
    let err = parse(
        "hangar.yml",
        "environments:\n  prod: {strategy: bluegreen}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("hangar.yml:2:"), "{err}");
}

#[test]
fn broken_yaml_never_panics() {
    for text in [
        "services: [",
        "services:\n  a:\n   run: x\n  - b",
        "\t",
        ":",
        "services: {a: {run: 1}}",
    ] {
        let _ = parse("hangar.yml", text);
    }
}
