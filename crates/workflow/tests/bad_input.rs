//! Each mistake gets an error at its exact place.

use hangar_workflow::validate;

/// Every diagnostic as `line:col message`, one per line.
fn all(text: &str) -> String {
    let d = validate("ci.yml", text);
    assert!(!d.is_empty(), "expected an error for:\n{text}");
    d.iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

fn has(text: &str, expected: &str) {
    let got = all(text);
    assert!(
        got.lines().any(|l| l == expected || l.contains(expected)),
        "expected `{expected}` in:\n{got}"
    );
}

#[test]
fn positioned_errors() {
    has(
        "on: push\njobs:\n  a:\n    runs_on: x\n    steps: [{run: x}]\n",
        "4:5 unknown key `runs_on` in job `a`",
    );
    let d = validate(
        "ci.yml",
        "on: push\njobs:\n  a:\n    runs_on: x\n    steps: [{run: x}]\n",
    );
    assert!(
        d.iter()
            .any(|d| d.help.as_deref() == Some("did you mean `runs-on`?"))
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    needs: [b]\n    steps: [{run: x}]\n",
        "5:13 job `a` needs unknown job `b`",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    needs: b\n    steps: [{run: x}]\n  b:\n    runs-on: x\n    needs: a\n    steps: [{run: x}]\n",
        "5:12 Job 'a' depends on job 'b' which creates a cycle in the dependency graph: a -> b -> a",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    needs: b\n    steps: [{run: x}]\n  b:\n    runs-on: x\n    needs: a\n    steps: [{run: x}]\n",
        "3:3 The workflow must contain at least one job with no dependencies",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - id: s\n        run: x\n      - id: s\n        run: y\n",
        "8:13 the step id `s` is already used in job `a`",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ github.ref == }}\n",
        "6:34 invalid expression: Unexpected end of expression: '=='",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ gihub.ref }}\n",
        "6:23 unknown context `gihub`",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    if: secrets.TOKEN != ''\n    steps: [{run: x}]\n",
        "5:9 context `secrets` is not available here",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ startsWith('a') }}\n",
        "6:23 invalid expression: Too few parameters supplied: 'startsWith'",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ frobnicate(1) }}\n",
        "6:23 invalid expression: Unrecognized function: 'frobnicate'",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: x\n        uses: actions/checkout@v4\n",
        "7:15 a step has either `run` or `uses`, not both",
    );
    has(
        "on: push\njobs:\n  a:\n    steps: [{run: x}]\n",
        "4:5 Required property is missing: runs-on (job `a`)",
    );
    has(
        "on: pusj\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x}]\n",
        "1:5 unknown event `pusj`",
    );
    has("on: push\njobs: [\n", "YAML: ");
}

#[test]
fn a_good_workflow_is_clean() {
    let text = r#"name: ci
on:
  push: { branches: [main], paths-ignore: ['docs/**'] }
  workflow_dispatch:
    inputs:
      level: { type: choice, options: [a, b], default: a }
env:
  REF: ${{ github.ref }}
jobs:
  build:
    runs-on: ${{ matrix.os }}
    strategy:
      matrix: { os: [ubuntu-latest], node: [18, 20] }
    outputs:
      v: ${{ steps.v.outputs.version }}
    steps:
      - uses: actions/checkout@v4
      - id: v
        run: echo "version=1" >> "$GITHUB_OUTPUT"
      - if: failure()
        run: echo ${{ hashFiles('**/*.lock') }} ${{ secrets.TOKEN }}
  deploy:
    needs: build
    if: ${{ needs.build.outputs.v != '' && github.ref == 'refs/heads/main' }}
    uses: ./.github/workflows/deploy.yml
    with: { version: "${{ needs.build.outputs.v }}" }
    secrets: inherit
"#;
    assert_eq!(validate("ci.yml", text), vec![]);
}

#[test]
fn duplicates_and_required_properties() {
    // A key defined twice: YAML would silently keep the last.
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    runs-on: y\n    steps: [{run: x}]\n",
        "5:5 YAML: 'runs-on' is already defined (first at line 4)",
    );
    // Job ids are case-insensitive.
    has(
        "on: push\njobs:\n  build:\n    runs-on: x\n    steps: [{run: x}]\n  BUILD:\n    runs-on: x\n    steps: [{run: x}]\n",
        "6:3 'BUILD' is already defined",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    concurrency:\n      cancel-in-progress: true\n    steps: [{run: x}]\n",
        "6:7 Required property is missing: group",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    container:\n      options: --cpus 1\n    steps: [{run: x}]\n",
        "6:7 Container image cannot be empty",
    );
    has(
        "on:\n  workflow_call:\n    inputs:\n      who:\n        default: me\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x}]\n",
        "5:9 Required property is missing: type",
    );
    has(
        "name: [a, b]\non: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x}]\n",
        "1:7 `name` must be a string, found a sequence",
    );
}

#[test]
fn contexts_where_github_allows_them() {
    let ok = "on: push\njobs:\n  a:\n    runs-on: x\n    environment:\n      name: prod\n      url: ${{ steps.deploy.outputs.url }}\n    container:\n      image: x\n      credentials:\n        username: ${{ env.USER }}\n        password: ${{ secrets.PW }}\n    steps: [{id: deploy, run: x}]\n";
    assert!(
        validate("ci.yml", ok).is_empty(),
        "{:?}",
        validate("ci.yml", ok)
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    environment:\n      name: ${{ steps.x.outputs.y }}\n    steps: [{run: x}]\n",
        "context `steps` is not available here",
    );
}

#[test]
fn calls_of_reusable_workflows_match_what_the_callee_declares() {
    let callee = "on:\n  workflow_call:\n    inputs:\n      env:\n        type: string\n        required: true\n      dry:\n        type: boolean\n    secrets:\n      token:\n        required: true\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x}]\n";
    let resolve =
        |uses: &str| (uses == "./.github/workflows/deploy.yml").then(|| callee.to_string());
    let check = |caller: &str| -> Vec<String> {
        hangar_workflow::validate_with("ci.yml", caller, &resolve)
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect()
    };
    let good = "on: push\njobs:\n  d:\n    uses: ./.github/workflows/deploy.yml\n    with:\n      env: prod\n      dry: ${{ github.ref != 'refs/heads/main' }}\n    secrets:\n      token: ${{ secrets.T }}\n";
    assert!(check(good).is_empty(), "{:?}", check(good));
    let inherit = "on: push\njobs:\n  d:\n    uses: ./.github/workflows/deploy.yml\n    with: { env: prod, dry: true }\n    secrets: inherit\n";
    assert!(check(inherit).is_empty(), "{:?}", check(inherit));
    let bad = "on: push\njobs:\n  d:\n    uses: ./.github/workflows/deploy.yml\n    with:\n      dry: maybe\n      region: eu\n    secrets:\n      other: x\n";
    let got = check(bad);
    for expected in [
        "4:11 Input env is required, but not provided while calling.",
        "4:11 Secret token is required, but not provided while calling.",
        "6:12 Unexpected value 'maybe'",
        "7:7 Invalid input, region is not defined in the referenced workflow.",
        "9:7 Invalid secret, other is not defined in the referenced workflow.",
    ] {
        assert!(
            got.iter().any(|g| g == expected),
            "missing {expected} in {got:?}"
        );
    }
    let typo = "on: push\njobs:\n  d:\n    uses: ./.github/workflows/deploy.yml\n    with: { env: prod }\n    secrets: inhrit\n";
    assert!(
        check(typo)
            .iter()
            .any(|g| g == "6:14 Unexpected value 'inhrit'"),
        "{:?}",
        check(typo)
    );
}

#[test]
fn permissions_runner_groups_containers_and_event_filters() {
    has(
        "on: push\npermissions:\n  contents: invalid\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x}]\n",
        "3:13 Unexpected value 'invalid'",
    );
    has(
        "on: push\npermissions:\n  content: read\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x}]\n",
        "3:3 unknown key `content` in `permissions`",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on:\n      group: team/linux\n    steps: [{run: x}]\n",
        "5:14 Invalid runs-on group name 'team/linux'",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    container:\n      image: node\n      credentials:\n        user: me\n    steps: [{run: x}]\n",
        "8:9 unknown key `user` in container `credentials`",
    );
    has(
        "on:\n  push:\n    types: [opened]\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x}]\n",
        "3:5 unknown key `types` in `on.push`",
    );
    has(
        "on: push\njobs:\n  __a:\n    runs-on: x\n    steps: [{run: x}]\n",
        "3:3 The identifier '__a' is invalid. IDs starting with '__' are reserved.",
    );
    has(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ }}\n",
        "6:23 An expression was expected",
    );
    let ok = "on: push\npermissions: read-all\njobs:\n  a:\n    runs-on:\n      group: org/linux\n    permissions:\n      id-token: write\n      contents: read\n    if: ''\n    steps: [{run: x}]\n";
    assert!(
        validate("ci.yml", ok).is_empty(),
        "{:?}",
        validate("ci.yml", ok)
    );
}

#[test]
fn called_workflows_may_not_ask_for_more_token_permissions_than_the_caller_has() {
    let callee = "on: workflow_call\njobs:\n  d:\n    name: Deploy\n    permissions:\n      contents: write\n    runs-on: x\n    steps: [{run: x}]\n";
    let resolve = |_: &str| Some(callee.to_string());
    let msgs = |caller: &str, policy| -> Vec<String> {
        hangar_workflow::validate_with_policy("ci.yml", caller, &resolve, policy)
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect()
    };
    use hangar_workflow::PermissionsPolicy::{LimitedRead, Write};
    let by_default = "on: push\njobs:\n  go:\n    uses: ./.github/workflows/d.yml\n";
    assert_eq!(
        msgs(by_default, LimitedRead),
        vec![
            "3:3 Error calling workflow './.github/workflows/d.yml'. The nested job 'Deploy' is requesting 'contents: write', but is only allowed 'contents: read'."
        ]
    );
    assert!(msgs(by_default, Write).is_empty());
    let granted = "on: push\njobs:\n  go:\n    permissions:\n      contents: write\n    uses: ./.github/workflows/d.yml\n";
    assert!(msgs(granted, LimitedRead).is_empty());
    let workflow_level =
        "on: push\npermissions: read-all\njobs:\n  go:\n    uses: ./.github/workflows/d.yml\n";
    assert_eq!(
        msgs(workflow_level, Write).len(),
        1,
        "the workflow's read-all is all the job has"
    );
}

/// A schedule's cron is read by the parser the server's schedules run on:
/// a value out of range, a croner-only extension or a nickname GitHub does
/// not accept is an error at the value, naming the field.
#[test]
fn cron_mistakes_name_the_field_at_the_value() {
    let wf = |cron: &str| {
        format!(
            "on:\n  schedule:\n    - cron: '{cron}'\njobs:\n  a:\n    runs-on: x\n    steps: [{{run: x}}]\n"
        )
    };
    has(
        &wf("0 24 * * *"),
        "3:14 cron `0 24 * * *`: hour `24` is out of range 0-23",
    );
    has(
        &wf("0 0 L * *"),
        "3:14 cron `0 0 L * *`: day of month `L` is not cron",
    );
    has(
        &wf("@daily"),
        "3:14 cron `@daily` must have 5 fields (minute hour day month weekday)",
    );
    has(&wf("0 0 * * * *"), "must have 5 fields");
    assert!(validate("ci.yml", &wf("*/15 9-17 * JAN-MAR mon-fri")).is_empty());
}

/// A schedule entry's `timezone:` (GitHub's `cron-mapping`: `cron` and
/// `timezone`, nothing else) is a name of the time zone database the
/// server's scheduler reads it with.
#[test]
fn schedule_timezones_are_checked_at_the_value() {
    let wf = |entry: &str| {
        format!(
            "on:\n  schedule:\n    - cron: '30 5 * * 1-5'\n{entry}jobs:\n  a:\n    runs-on: x\n    steps: [{{run: x}}]\n"
        )
    };
    for ok in [
        "      timezone: 'America/New_York'\n",
        "      timezone: Asia/Kolkata\n",
        "      timezone: UTC\n",
        "",
    ] {
        let d = validate("ci.yml", &wf(ok));
        assert!(d.is_empty(), "{ok}: {d:?}");
    }
    let typo = wf("      timezone: America/New_Yrok\n");
    has(
        &typo,
        "4:17 unknown time zone `America/New_Yrok`: write an IANA name such as `America/New_York`",
    );
    let help = |entry: &str| validate("ci.yml", &wf(entry))[0].help.clone();
    assert_eq!(
        help("      timezone: America/New_Yrok\n").as_deref(),
        Some("did you mean `America/New_York`?")
    );
    assert_eq!(
        help("      timezone: Kolkata\n").as_deref(),
        Some("did you mean `Asia/Kolkata`?"),
        "the city alone"
    );
    assert_eq!(help("      timezone: Mars/Olympus_Mons\n"), None);
    has(
        &wf("      timezone: [America/New_York]\n"),
        "4:17 `timezone` must be a string, found a sequence",
    );
    has(
        &wf("      timezone:\n"),
        "`timezone` must be a string, found null",
    );
    has(
        &wf("      timezone: ''\n"),
        "4:18 a time zone must not be empty",
    );
    has(
        &wf("      timezone: ../../etc/passwd\n"),
        "4:17 `../../etc/passwd` is not an IANA time zone name",
    );
    // GitHub refuses any other key of an entry ("Invalid schedule key").
    let other = wf("      timzone: Europe/Paris\n");
    has(&other, "4:7 unknown key `timzone` in a schedule entry");
    let d = validate("ci.yml", &other);
    assert_eq!(d[0].help.as_deref(), Some("did you mean `timezone`?"));
}
