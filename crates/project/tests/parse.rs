use hangar_project::{AlertKind, Limit, Severity, StrategyKind, parse};

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

fn errors(text: &str) -> Vec<hangar_project::ProjectError> {
    parse("hangar.yml", text).unwrap_err().0
}

#[test]
fn every_mistake_at_once_with_the_service_named_and_types_explained() {
    let text = "services:\n  api:\n    run: x\n    instances: two\n    helth: {path: /}\n  worker:\n    run: y\n    health: {path: /, tcp: maybe}\nenvironments:\n  prod:\n    strategy: canry\n";
    let errs = errors(text);
    let lines: Vec<u32> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, [4, 5, 8, 11], "{errs:#?}");
    assert_eq!(
        errs[0].message,
        "service `api`: `instances` must be a whole number, not `two`"
    );
    assert_eq!(errs[1].message, "service `api`: unknown key `helth`");
    assert_eq!(errs[1].help.as_deref(), Some("did you mean `health`?"));
    assert_eq!(
        errs[2].message,
        "service `worker`: `tcp` must be true or false, not `maybe`"
    );
    assert_eq!(
        errs[3].message,
        "environment `prod`: `canry` is not a valid `strategy`"
    );
    assert_eq!(errs[3].help.as_deref(), Some("did you mean `canary`?"));
    for e in &errs {
        let all = format!("{} {:?}", e.message, e.help);
        assert!(
            !all.contains("docs/"),
            "no source-tree path in messages: {all}"
        );
        assert!(
            !all.contains("line "),
            "the position is not repeated: {all}"
        );
    }
}

#[test]
fn a_missing_run_is_named() {
    let errs = errors("services:\n  api:\n    instances: 2\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].message.contains("service `api`") && errs[0].message.contains("`run`"),
        "{errs:#?}"
    );
}

#[test]
fn two_services_on_one_address_and_canary_steps_short_of_100() {
    let text = "services:\n  api: { run: a, listen: 127.0.0.1:8080 }\n  web: { run: b }\nenvironments:\n  prod:\n    listen: { web: 127.0.0.1:8080 }\n    strategy: canary\n    canary: { steps: [10, 50] }\n  dev:\n    listen: { web: 127.0.0.1:8081 }\n";
    let errs = errors(text);
    let text_of = |e: &hangar_project::ProjectError| e.message.clone();
    let msgs: Vec<String> = errs.iter().map(text_of).collect();
    assert_eq!(errs.len(), 2, "{msgs:#?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("`api` and `web` both listen on 127.0.0.1:8080")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("canary steps end at 50%")),
        "{msgs:#?}"
    );
}

#[test]
fn alert_rules_are_read_with_their_units() {
    let text = "services:\n  web: {run: x}\nenvironments:\n  prod:\n    metrics_listen: 127.0.0.1:9464\n    alerts:\n      webhook: https://hooks.example/alerts\n      secret: ALERT_KEY\n      interval: 1s\n      rules:\n        errors: {service: web, kind: error_rate, threshold: 5%, for: 5m, severity: critical}\n        slow: {kind: p95_latency, threshold: 300ms, window: 30s}\n        crashing: {kind: restart_loop}\n        down: {kind: instances_down, threshold: 2}\n";
    let p = parse("hangar.yml", text).unwrap_or_else(|e| panic!("{e}"));
    let prod = &p.environments["prod"].value;
    assert_eq!(
        prod.metrics_listen.as_ref().unwrap().value,
        "127.0.0.1:9464"
    );
    let alerts = prod.alerts.as_ref().unwrap();
    assert_eq!(alerts.interval.0, std::time::Duration::from_secs(1));
    let rule = |n: &str| &alerts.rules[n].value;
    assert_eq!(rule("errors").limit(), Ok(Limit::Rate(0.05)));
    assert_eq!(rule("errors").for_.0, std::time::Duration::from_secs(300));
    assert_eq!(rule("errors").severity, Severity::Critical);
    assert_eq!(
        rule("slow").limit(),
        Ok(Limit::Latency(std::time::Duration::from_millis(300)))
    );
    assert_eq!(rule("slow").severity, Severity::Warning);
    assert_eq!(rule("crashing").limit(), Ok(Limit::Count(3)));
    assert_eq!(rule("down").limit(), Ok(Limit::Count(2)));
    assert_eq!(rule("down").kind.value, AlertKind::InstancesDown);
}

#[test]
fn alert_mistakes_are_reported_where_they_are_written() {
    let text = "services:\n  web: {run: x}\nenvironments:\n  prod:\n    metrics_listen: nowhere\n    alerts:\n      webhook: ftp://x\n      rules:\n        a: {kind: error_rat, threshold: 5%}\n        b: {kind: error_rate, threshold: lots}\n        c: {kind: p99_latency}\n        d: {kind: no_traffic, service: webb}\n        e: {kind: error_rate, threshold: 1%, fore: 5m}\n";
    let errs = errors(text);
    let got: Vec<(u32, &str)> = errs.iter().map(|e| (e.line, e.message.as_str())).collect();
    assert_eq!(errs.len(), 7, "{got:#?}");
    assert_eq!(errs[0].line, 5);
    assert!(
        errs[0]
            .message
            .contains("`metrics_listen: nowhere` is not an address")
    );
    assert_eq!(errs[1].line, 7);
    assert!(errs[1].message.contains("not an http:// or https:// URL"));
    assert_eq!((errs[2].line, errs[2].column), (9, 19), "{got:#?}");
    assert_eq!(
        errs[2].message,
        "environment `prod`: `error_rat` is not a valid `kind`"
    );
    assert_eq!(errs[2].help.as_deref(), Some("did you mean `error_rate`?"));
    assert_eq!(errs[3].line, 10);
    assert!(
        errs[3]
            .message
            .contains("alert `b`: threshold: invalid percentage `lots`"),
        "{got:#?}"
    );
    assert_eq!(errs[4].line, 11);
    assert!(
        errs[4]
            .message
            .contains("`p99_latency` rule needs a `threshold:` duration")
    );
    assert_eq!(errs[5].line, 12);
    assert!(errs[5].message.contains("unknown service `webb`"));
    assert_eq!(errs[5].help.as_deref(), Some("did you mean `web`?"));
    assert_eq!(errs[6].line, 13);
    assert_eq!(errs[6].message, "environment `prod`: unknown key `fore`");
    assert_eq!(errs[6].help.as_deref(), Some("did you mean `for`?"));
}

#[test]
fn on_interrupt_is_abort_unless_resume_is_asked_and_a_typo_is_named() {
    let p = parse(
        "hangar.yml",
        "services:\n  web:\n    run: x\nenvironments:\n  prod:\n    on_interrupt: resume\n  dev: {}\n",
    )
    .unwrap();
    assert_eq!(
        p.environments["prod"].value.on_interrupt,
        hangar_project::OnInterrupt::Resume
    );
    assert_eq!(
        p.environments["dev"].value.on_interrupt,
        hangar_project::OnInterrupt::Abort
    );
    let errs =
        errors("services:\n  web:\n    run: x\nenvironments:\n  prod:\n    on_interrupt: resum\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].line, 6);
    assert_eq!(
        errs[0].message,
        "environment `prod`: `resum` is not a valid `on_interrupt`"
    );
    assert_eq!(errs[0].help.as_deref(), Some("did you mean `resume`?"));
}

#[test]
fn notification_rules_name_secrets_and_known_events_at_their_positions() {
    let ok = "notifications:\n  - events: [run_failed, run_fixed]\n    channel: webhook\n    url_secret: HOOK_URL\n    signing_secret: HOOK_KEY\n  - events: [deployment_started]\n    channel: email\n    url_secret: SMTP_URL\n";
    let p = parse("hangar.yml", ok).unwrap();
    assert_eq!(p.notifications.len(), 2);
    assert_eq!(p.notifications[0].value.url_secret.value, "HOOK_URL");
    assert_eq!(
        p.notifications[0]
            .value
            .signing_secret
            .as_ref()
            .unwrap()
            .value,
        "HOOK_KEY"
    );

    let bad = "notifications:\n  - events: [run_faild]\n    channel: slak\n    url_secret: https://hooks.slack.com/services/T0/B0/XX\n  - events: []\n    channel: slack\n    url_secret: 9LIVES\n    signing_secret: K\n";
    let errs = parse("hangar.yml", bad).unwrap_err().0;
    let at = |line: u32| {
        errs.iter()
            .find(|e| e.line == line)
            .unwrap_or_else(|| panic!("no error on line {line}: {errs:#?}"))
    };
    let e = at(2);
    assert!(e.message.contains("unknown event `run_faild`"), "{e}");
    assert_eq!(e.help.as_deref(), Some("did you mean `run_failed`?"));
    assert_eq!(e.column, 14);
    assert!(at(3).message.contains("unknown channel `slak`"));
    let e = at(4);
    assert!(
        e.message.contains("holds a value, not a secret's name"),
        "{e}"
    );
    assert!(e.help.as_deref().unwrap().contains("secret"), "{e}");
    assert!(
        !e.to_string().contains("hooks.slack.com/services"),
        "the value is not echoed: {e}"
    );
    assert!(at(5).message.contains("`events` is empty"));
    assert!(
        at(7)
            .message
            .contains("`url_secret` `9LIVES` is not a secret's name")
    );
    assert!(
        errs.iter()
            .any(|e| e.message.contains("only for the `webhook` channel"))
    );

    let errs = parse(
        "hangar.yml",
        "notifications:\n  - events: [run_failed]\n    channel: slack\n    url: https://x\n",
    )
    .unwrap_err()
    .0;
    assert!(
        errs.iter()
            .any(|e| e.line == 4 && e.message == "unknown key `url`"),
        "{errs:#?}"
    );
}

#[test]
fn a_tcp_service_with_an_http_health_check_is_refused_at_its_service() {
    let errs = errors(
        "services:\n  db:\n    run: postgres -p $PORT\n    protocol: tcp\n    health: { path: /health }\n  cache:\n    run: redis-server --port $PORT\n    protocol: tcp\n",
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].line, 3, "the service, where its errors point");
    assert!(
        errs[0].message.contains("service `db` has `protocol: tcp`"),
        "{errs:#?}"
    );
    assert!(errs[0].help.as_deref().unwrap_or("").contains("pg_isready"));
    let errs = errors("services:\n  db:\n    run: x\n    protocol: udp\n");
    assert_eq!(errs[0].line, 4, "{errs:#?}");
    assert_eq!(
        errs[0].help.as_deref(),
        Some("use one of: http, tcp"),
        "{errs:#?}"
    );
}

#[test]
fn service_references_in_env_are_checked_at_their_value_with_did_you_mean() {
    let text = "services:\n  db:\n    run: x\n    protocol: tcp\n  api:\n    run: y\n    depends_on: [db]\n    env:\n      A: ${{ services.dbb.url }}\n      B: postgres://app@${{ services.db.hots }}/app\n      C: ${{ secrets.X }}\n      D: ${{ services.db.url }}\n  web:\n    run: z\n    env: { E: '${{ services.db.port }}' }\n";
    let errs = errors(text);
    let got: Vec<(u32, &str, Option<&str>)> = errs
        .iter()
        .map(|e| (e.line, e.message.as_str(), e.help.as_deref()))
        .collect();
    assert_eq!(got.len(), 4, "{errs:#?}");
    assert_eq!(got[0].0, 9);
    assert!(got[0].1.contains("unknown service `dbb`"), "{got:?}");
    assert_eq!(got[0].2, Some("did you mean `db`?"));
    assert_eq!(got[1].0, 10);
    assert!(got[1].1.contains("no field `hots`"), "{got:?}");
    assert_eq!(got[1].2, Some("did you mean `host`?"));
    assert_eq!(got[2].0, 11);
    assert!(got[2].1.contains("services.NAME.host"), "{got:?}");
    assert_eq!(got[3].0, 15);
    assert!(
        got[3].1.contains("which `web` does not depend on"),
        "{got:?}"
    );
    assert!(got[3].2.unwrap().contains("depends_on"), "{got:?}");
}

#[test]
fn a_strategy_written_as_a_mapping_or_a_list_says_what_shapes_are_allowed() {
    for (value, column) in [
        ("{ blue-green: { scale_down_delay: 1s } }", 29),
        ("[canary]", 15),
        ("{ type: canary }", 17),
        ("\n      blue-green: { scale_down_delay: 1s }", 0),
    ] {
        let text =
            format!("services:\n  a:\n    run: x\nenvironments:\n  prod:\n    strategy: {value}\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{value}: {errs:#?}");
        let e = &errs[0];
        assert!(e.line == 6 || e.line == 7, "{value}: {e:#?}");
        if column > 0 {
            assert_eq!(e.column, column, "{value}: {e:#?}");
        }
        assert_eq!(
            e.message,
            "environment `prod`: `strategy` is one word: `rolling`, `blue-green` or `canary`, not a mapping or a list",
            "{value}"
        );
        let help = e.help.as_deref().unwrap_or_default();
        assert!(
            help.contains("strategy: blue-green\n    blue_green: {"),
            "{help}"
        );
        assert!(!format!("{e:?}").contains("enum"), "no serde words: {e:#?}");
    }
}

#[test]
fn a_stateful_service_runs_one_instance_and_takes_no_strategy() {
    let errs = errors(
        "services:\n  db:\n    run: x\n    stateful: true\n    instances: 2\n    strategy: blue-green\n",
    );
    let got: Vec<(u32, &str)> = errs.iter().map(|e| (e.line, e.message.as_str())).collect();
    assert_eq!(got.len(), 2, "{errs:#?}");
    assert!(
        got.iter()
            .any(|(l, m)| *l == 6 && m.contains("`strategy` is not a key of a service")),
        "{got:?}"
    );
    let strategy = errs.iter().find(|e| e.line == 6).unwrap();
    assert!(
        strategy
            .help
            .as_deref()
            .unwrap()
            .contains("restarted in place"),
        "{strategy:#?}"
    );
    assert!(
        got.iter()
            .any(|(_, m)| m.contains("`stateful: true` with `instances: 2`")),
        "{got:?}"
    );
}

#[test]
fn service_references_in_backup_commands_are_checked_as_in_env_and_may_name_the_service_itself() {
    let text = "services:\n  db:\n    run: x\n    protocol: tcp\n    backup:\n      run: pg_dump -h ${{ services.db.host }} -p ${{ services.db.port }} > $HANGAR_BACKUP_DIR/db.sql\n      restore: psql ${{ services.dbb.url }}\n  api:\n    run: y\n    backup:\n      run: curl ${{ services.db.hots }}\n      restore: echo ${{ env.X }}\n";
    let errs = errors(text);
    let got: Vec<(u32, &str, Option<&str>)> = errs
        .iter()
        .map(|e| (e.line, e.message.as_str(), e.help.as_deref()))
        .collect();
    assert_eq!(got.len(), 3, "{errs:#?}");
    assert_eq!(got[0].0, 7);
    assert!(
        got[0].1.starts_with(
            "service `db`: backup.restore: `${{ services.dbb.url }}` names unknown service `dbb`"
        ),
        "{got:?}"
    );
    assert_eq!(got[0].2, Some("did you mean `db`?"));
    assert_eq!(got[1].0, 11);
    assert!(got[1].1.contains("backup.run"), "{got:?}");
    assert_eq!(got[1].2, Some("did you mean `host`?"));
    assert_eq!(got[2].0, 12);
    assert!(got[2].1.contains("services.NAME.host"), "{got:?}");
}

#[test]
fn a_backup_schedule_needs_a_period_and_known_environments() {
    let env = "environments:\n  prod: {}\n  drill: {}\n";
    let ok = format!(
        "services:\n  a:\n    run: x\n{env}recovery:\n  every: 1h\n  environments: [prod]\n"
    );
    let p = hangar_project::parse("hangar.yml", &ok).unwrap();
    let r = p.recovery.unwrap();
    assert_eq!(
        r.every.unwrap().value.0,
        std::time::Duration::from_secs(3600)
    );
    assert_eq!(r.environments[0].value, "prod");

    let errs = errors(&format!(
        "services:\n  a:\n    run: x\n{env}recovery:\n  every: 1h\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!((errs[0].line, errs[0].column), (8, 10), "{errs:#?}");
    assert!(
        errs[0].message.contains("needs the environments"),
        "{errs:#?}"
    );
    assert!(
        errs[0]
            .help
            .as_deref()
            .unwrap()
            .contains("environments: [prod]")
    );

    let errs = errors(&format!(
        "services:\n  a:\n    run: x\n{env}recovery:\n  every: 0s\n  environments: [prd]\n"
    ));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].message.contains("must be more than 0"), "{errs:#?}");
    assert_eq!(errs[1].line, 9, "{errs:#?}");
    assert!(
        errs[1].message.contains("unknown environment `prd`"),
        "{errs:#?}"
    );
    assert_eq!(errs[1].help.as_deref(), Some("did you mean `prod`?"));

    let errs = errors(&format!(
        "services:\n  a:\n    run: x\n{env}recovery:\n  every: daily\n  environments: [prod]\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].line, 8, "{errs:#?}");
    assert!(errs[0].message.contains("duration"), "{errs:#?}");
}

#[test]
fn a_cron_backup_schedule_is_checked_at_its_line_and_column() {
    let env = "environments:\n  prod: {}\n";
    let head = format!("services:\n  a:\n    run: x\n{env}recovery:\n");
    let p = hangar_project::parse(
        "hangar.yml",
        &format!("{head}  schedule: \"0 3 * * *\"\n  environments: [prod]\n"),
    )
    .unwrap();
    let r = p.recovery.unwrap();
    assert_eq!(r.schedule.unwrap().value, "0 3 * * *");
    assert!(r.every.is_none());
    // Seconds may lead, for schedules under a minute.
    hangar_project::parse(
        "hangar.yml",
        &format!("{head}  schedule: \"*/2 * * * * *\"\n  environments: [prod]\n"),
    )
    .unwrap();

    // Explained as the workflow validator explains a schedule's cron, at the value.
    let errs = errors(&format!(
        "{head}  schedule: \"61 3 * * *\"\n  environments: [prod]\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!((errs[0].line, errs[0].column), (7, 13), "{errs:#?}");
    assert_eq!(
        errs[0].message,
        "`recovery.schedule`: cron `61 3 * * *`: minute `61` is out of range 0-59"
    );
    assert!(
        errs[0].help.as_deref().unwrap().contains("UTC"),
        "{errs:#?}"
    );
    let errs = errors(&format!(
        "{head}  schedule: \"@daily\"\n  environments: [prod]\n"
    ));
    assert!(
        errs[0]
            .message
            .contains("must have 5 fields (minute hour day month weekday)"),
        "{errs:#?}"
    );

    // Exactly one of `every` and `schedule`.
    let errs = errors(&format!(
        "{head}  every: 1h\n  schedule: \"0 3 * * *\"\n  environments: [prod]\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!((errs[0].line, errs[0].column), (8, 13), "{errs:#?}");
    assert!(
        errs[0].message.contains("both `every` and `schedule`"),
        "{errs:#?}"
    );

    // A schedule needs its environments.
    let errs = errors(&format!("{head}  schedule: \"0 3 * * *\"\n"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0]
            .message
            .contains("`recovery.schedule` needs the environments"),
        "{errs:#?}"
    );
}
