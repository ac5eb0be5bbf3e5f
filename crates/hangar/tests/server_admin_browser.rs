//! The admin pages and the delivery page in a real browser (Debian's headless
//! `chromium`) against a real `hangar serve` watching a real repository: an
//! approval that names its job, branch and commit is approved from the
//! approvals page; a token is created (shown once) and revoked; a repository
//! is registered and deleted; a secret is set and never shown; an agent is
//! drained and resumed; the delivery page shows a canary's weights, promotes
//! it, rolls it back, and a read token sees none of those buttons.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{Cdp, chromium, http, serve};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

fn get(url: &str, token: &str) -> Value {
    let (code, body) = http("GET", url, token, None);
    assert_eq!(code, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The service's page through the environment's router.
fn page(port: u16) -> Option<String> {
    let (code, body) = std::panic::catch_unwind(|| {
        http(
            "GET",
            &format!("http://127.0.0.1:{port}/index.html"),
            "",
            None,
        )
    })
    .ok()?;
    (code == 200).then(|| body.trim().to_string())
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Down<'a>(&'a Path);
impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["down", "--env", "staging", "--dir"])
            .arg(self.0)
            .output();
    }
}

#[test]
fn admin_and_delivery_pages_work_in_a_browser() {
    let Some(chrome) = chromium("admin_and_delivery_pages_work_in_a_browser") else {
        return;
    };
    if !common::have_python3() {
        return;
    }
    let repo = hangar_testkit::empty_repo();
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let yml = format!(
        "services:\n  web:\n    run: python3 -m http.server $PORT --bind 127.0.0.1 --directory site\n    artifact: [site]\n    health: {{ path: /index.html, interval: 200ms, timeout: 1s, deadline: 20s }}\n    stop: {{ drain: 100ms, timeout: 2s }}\nenvironments:\n  prod:\n    protection: {{ reviewers: [admin] }}\n  staging:\n    strategy: canary\n    canary: {{ steps: [50, 100], interval: 60s, step_deadline: 5m }}\n    listen: {{ web: 127.0.0.1:{port} }}\n"
    );
    let v1 = hangar_testkit::commit(
        repo.path(),
        &[
            ("hangar.yml", &yml),
            ("site/index.html", "v1"),
            (".gitignore", ".hangar/\n"),
        ],
    );
    let repo_arg = repo.path().display().to_string();
    let (_server, url, admin) = serve(
        BIN,
        data.path(),
        &["--poll-ms", "100", "--sandbox", "none", "--repo", &repo_arg],
    );
    let base = url.trim_end_matches("/ui/").to_string();
    let _down = Down(repo.path());
    // A rule whose webhook answers nothing: its failed delivery must show on
    // the notifications page.
    let closed = common::free_port();
    let (code, body) = http(
        "POST",
        &format!("{base}/api/v1/notifications"),
        &admin,
        Some(&json!({"events": ["approval_waiting"], "channel": "webhook", "url": format!("http://127.0.0.1:{closed}/hook")}).to_string()),
    );
    assert_eq!(code, 201, "{body}");
    // Pushed while the server watches: a job deploying to the protected environment.
    hangar_testkit::commit(
        repo.path(),
        &[(
            ".github/workflows/ci.yml",
            "name: ci\non: push\njobs:\n  deploy:\n    environment: prod\n    runs-on: ubuntu-latest\n    steps: [{run: echo deployed}]\n",
        )],
    );

    let mut cdp = Cdp::launch(
        &chrome,
        tmp.path(),
        &format!("{url}#/approvals?token={admin}"),
    );
    // The page takes the token from its first URL: moving on before it ran
    // would leave it without one.
    cdp.wait(
        "the UI took the token",
        20,
        "(() => { try { return location.origin !== 'null' && localStorage.getItem('hangar.token'); } catch (e) { return false; } })()",
    );

    // Approvals: the waiting one names its job, branch and commit, and Approve runs it.
    cdp.go(
        "#/approvals",
        "[...document.querySelectorAll('tr[data-approval]')].some(r => r.querySelector('.state').innerText === 'pending' && r.querySelector('.what').innerText.includes('deploy'))",
    );
    let what = cdp.eval("document.querySelector('tr[data-approval] .what').innerText");
    assert!(what.as_str().unwrap().contains("main"), "{what}");
    let runs = get(&format!("{base}/api/v1/runs"), &admin);
    assert_eq!(runs[0]["status"], "waiting", "{runs}");
    cdp.click("tr[data-approval] button.primary");
    wait_for("the approved run finishes", 60, || {
        let r = get(&format!("{base}/api/v1/runs"), &admin);
        r[0]["conclusion"] == "success"
    });
    // The approval's notification could not be delivered: the notifications
    // page says so, with the channel's host and the attempts made.
    wait_for("the notification's delivery is logged", 60, || {
        let sent = get(&format!("{base}/api/v1/outbound?kind=notification"), &admin);
        sent.as_array().is_some_and(|a| !a.is_empty())
    });
    cdp.go(
        "#/notifications",
        "document.querySelector('#deliveries tr[data-outbound].failed')",
    );
    let row = cdp.eval("document.querySelector('#deliveries tr[data-outbound]').innerText");
    let row = row.as_str().unwrap();
    assert!(row.contains(&format!("127.0.0.1:{closed}")), "{row}");
    assert!(row.contains("approval_waiting"), "{row}");
    assert!(row.contains("failed"), "{row}");
    // The runs list shows the repository, commit message and author.
    cdp.go("#/runs", "document.querySelector('#runs tr[data-run]')");
    let row = cdp.eval("document.querySelector('#runs tr[data-run]').innerText");
    assert!(row.as_str().unwrap().contains("change"), "{row}");

    // Tokens: created with a role, shown once, then revoked.
    cdp.go(
        "#/tokens",
        "document.querySelector('#tokens tr[data-token]')",
    );
    cdp.submit(
        "main form",
        &[("name", "ci-bot"), ("role", "read"), ("days", "1")],
    );
    cdp.wait(
        "the new token is shown",
        10,
        "document.querySelector('#new-token-value')",
    );
    let made = cdp.eval("document.querySelector('#new-token-value').innerText");
    let made = made.as_str().unwrap().to_string();
    assert_eq!(
        http("GET", &format!("{base}/api/v1/runs"), &made, None).0,
        200
    );
    cdp.wait(
        "its row",
        10,
        "document.querySelector('tr[data-token=\"ci-bot\"] button.danger')",
    );
    cdp.click("tr[data-token=\"ci-bot\"] button.danger");
    cdp.click("tr[data-token=\"ci-bot\"] button.danger");
    cdp.wait(
        "the token is revoked",
        10,
        "document.querySelector('tr[data-token=\"ci-bot\"] .state').innerText.startsWith('revoked')",
    );
    assert_eq!(
        http("GET", &format!("{base}/api/v1/runs"), &made, None).0,
        401
    );

    // Repositories: one registered and deleted from the page.
    cdp.go("#/repos", "document.querySelector('#repos tr[data-repo]')");
    cdp.submit(
        "main form",
        &[
            ("name", "other"),
            ("clone_url", "https://example.com/other.git"),
            ("forge", "github"),
        ],
    );
    cdp.wait(
        "the new repository",
        10,
        "document.querySelector('tr[data-repo=\"other\"]')",
    );
    cdp.click("tr[data-repo=\"other\"] button.danger");
    cdp.click("tr[data-repo=\"other\"] button.danger");
    cdp.wait(
        "the repository is gone",
        10,
        "!document.querySelector('tr[data-repo=\"other\"]')",
    );
    let repos = get(&format!("{base}/api/v1/repos"), &admin);
    assert_eq!(repos.as_array().unwrap().len(), 1, "{repos}");
    let repo_id = repos[0]["id"].as_i64().unwrap();

    // A secret set from the page is listed by name and its value is never shown.
    cdp.go(
        &format!("#/repos/{repo_id}"),
        "document.querySelector('.values[data-kind=\"secrets\"] form')",
    );
    cdp.submit(
        ".values[data-kind=\"secrets\"] form",
        &[("name", "DEPLOY_TOKEN"), ("value", "s3cr3t-value-xyz")],
    );
    cdp.wait(
        "the secret's name",
        10,
        "document.querySelector('.values[data-kind=\"secrets\"] li[data-name=\"DEPLOY_TOKEN\"]')",
    );
    let shown = "document.documentElement.outerHTML.includes('s3cr3t') || [...document.querySelectorAll('input')].some(i => i.value.includes('s3cr3t'))";
    assert_eq!(cdp.eval(shown), json!(false));
    // Read again from the server: still only the name.
    cdp.go("#/runs", "document.querySelector('#runs tr[data-run]')");
    cdp.go(
        &format!("#/repos/{repo_id}"),
        "document.querySelector('.values[data-kind=\"secrets\"] li[data-name=\"DEPLOY_TOKEN\"]')",
    );
    assert_eq!(cdp.eval(shown), json!(false));

    // Agents: the embedded agent drained, then back in service.
    cdp.go(
        "#/agents",
        "document.querySelector('tr[data-agent] button.drain')",
    );
    cdp.click("tr[data-agent] button.drain");
    cdp.wait(
        "drained",
        10,
        "document.querySelector('tr[data-agent] .state').innerText === 'drained'",
    );
    assert_eq!(
        get(&format!("{base}/api/v1/agents"), &admin)[0]["drained"],
        true
    );
    cdp.click("tr[data-agent] button.resume");
    cdp.wait(
        "in service",
        10,
        "document.querySelector('tr[data-agent] .state').innerText === 'in service'",
    );

    // Delivery (to an environment without reviewers, which the server would
    // hold for one): v1 deployed, then v2 as a canary at 50%, promoted, rolled back.
    let project = repo
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let deploy = |commit: &str| {
        http(
            "POST",
            &format!("{base}/api/v1/delivery/{project}/staging"),
            &admin,
            Some(
                &json!({"op": "deploy", "commit": commit, "no_build": false, "from_commit": true})
                    .to_string(),
            ),
        )
    };
    let (code, body) = deploy(&v1);
    assert_eq!(code, 202, "{body}");
    // The deployment runs on the server: followed by its operation's id.
    let op: Value = serde_json::from_str(&body).unwrap();
    let op_url = format!("{base}/api/v1/delivery/operations/{}", op["id"]);
    wait_for("the first deployment", 60, || {
        get(&op_url, &admin)["done"] == true
    });
    let op = get(&op_url, &admin);
    assert!(op["error"].is_null(), "{op}");
    assert_eq!(page(port).as_deref(), Some("v1"));
    hangar_testkit::commit(repo.path(), &[("site/index.html", "v2")]);
    let (code, body) = deploy("main");
    assert_eq!(code, 202, "{body}");
    cdp.go(
        "#/delivery",
        "document.querySelectorAll('.env tr[data-weight=\"50\"]').length === 2 && document.querySelector('.env button.promote')",
    );
    cdp.click(".env button.promote");
    wait_for("v2 serves all traffic", 30, || {
        page(port).as_deref() == Some("v2")
    });
    cdp.wait(
        "the rollback button",
        30,
        "document.querySelector('.env button[data-label=\"Rollback\"]') && document.querySelector('.env tr[data-weight=\"100\"]')",
    );
    cdp.click(".env button[data-label=\"Rollback\"]");
    cdp.click(".env button[data-label=\"Rollback\"]");
    wait_for("v1 serves again", 30, || {
        page(port).as_deref() == Some("v1")
    });
    cdp.wait(
        "the rollback in the history, with its decisions and times",
        20,
        "document.querySelector('details.deployment[data-outcome=\"rollback\"]') && document.querySelector('details.deployment li')",
    );

    // A read token sees the page but no button, and the API refuses it anyway.
    let (_, body) = http(
        "POST",
        &format!("{base}/api/v1/tokens"),
        &admin,
        Some(r#"{"name": "viewer", "role": "read"}"#),
    );
    let viewer: Value = serde_json::from_str(&body).unwrap();
    let viewer = viewer["token"].as_str().unwrap();
    cdp.eval(&format!(
        "localStorage.setItem('hangar.token', {}); location.reload(); 1",
        json!(viewer)
    ));
    cdp.wait(
        "the page as a reader",
        20,
        "document.querySelector('.env tr[data-version]')",
    );
    assert_eq!(
        cdp.eval("document.querySelectorAll('.env button').length"),
        json!(0)
    );
    let (code, _) = http(
        "POST",
        &format!("{base}/api/v1/delivery/{project}/staging"),
        viewer,
        Some(r#"{"op": "rollback"}"#),
    );
    assert_eq!(code, 403);
}

/// The tokens page makes a single-use agent token (the checkbox offered for
/// the agent role only), and its list says which agent tokens are
/// single-use and whether one has registered its agent; a read token gets
/// no form.
#[test]
fn the_token_form_makes_a_single_use_agent_token_and_the_list_shows_its_use() {
    let Some(chrome) =
        chromium("the_token_form_makes_a_single_use_agent_token_and_the_list_shows_its_use")
    else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_server, url, admin) = serve(BIN, data.path(), &["--agent-capacity", "0"]);
    let base = url.trim_end_matches("/ui/").to_string();
    let mut cdp = Cdp::launch(&chrome, tmp.path(), &format!("{url}#/tokens?token={admin}"));
    cdp.wait(
        "the UI took the token",
        20,
        "(() => { try { return location.origin !== 'null' && localStorage.getItem('hangar.token'); } catch (e) { return false; } })()",
    );
    cdp.go(
        "#/tokens",
        "document.querySelector('main form [name=single_use]')",
    );
    // As a user would: choose the role, then tick the box; for another role
    // the box is disabled.
    let choose = |cdp: &mut Cdp, role: &str| {
        cdp.eval(&format!(
            "(() => {{ const s = document.querySelector('main form [name=role]'); s.value = {}; s.dispatchEvent(new Event('change')); return 1; }})()",
            json!(role)
        ));
    };
    assert_eq!(
        cdp.eval("document.querySelector('main form [name=single_use]').disabled"),
        json!(true),
        "read is the first role"
    );
    choose(&mut cdp, "agent");
    assert_eq!(
        cdp.eval("document.querySelector('main form [name=single_use]').disabled"),
        json!(false)
    );
    cdp.eval("document.querySelector('main form [name=name]').value = 'box-once'; document.querySelector('main form [name=single_use]').click(); document.querySelector('main form').requestSubmit(); 1");
    cdp.wait(
        "the new token is shown",
        10,
        "document.querySelector('#new-token-value')",
    );
    let once = cdp.eval("document.querySelector('#new-token-value').innerText");
    let once = once.as_str().unwrap().to_string();
    cdp.wait(
        "its row says single-use, unused",
        10,
        "document.querySelector('tr[data-token=\"box-once\"] .use')?.innerText === 'single-use, unused'",
    );
    let (_, list) = http("GET", &format!("{base}/api/v1/tokens"), &admin, None);
    let list: Value = serde_json::from_str(&list).unwrap();
    let made = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "box-once")
        .unwrap();
    assert_eq!(made["reusable"], false, "{made}");
    assert_eq!(made["role"], "agent", "{made}");

    // A reusable agent token (box left unticked), and a read token whose
    // box was ticked while the role was agent: the box is cleared with it.
    cdp.click("main form [name=single_use]");
    cdp.submit("main form", &[("name", "fleet")]);
    cdp.wait(
        "the reusable one's row",
        10,
        "document.querySelector('tr[data-token=\"fleet\"] .use')?.innerText === 'reusable'",
    );
    choose(&mut cdp, "agent");
    cdp.click("main form [name=single_use]");
    choose(&mut cdp, "read");
    assert_eq!(
        cdp.eval("document.querySelector('main form [name=single_use]').checked"),
        json!(false)
    );
    cdp.submit("main form", &[("name", "reader")]);
    cdp.wait(
        "the read token's row",
        10,
        "document.querySelector('tr[data-token=\"reader\"] .use')?.innerText === ''",
    );

    // The single-use token registers one agent; the list then says so.
    let register = json!({"protocol_version": hangar_agent::PROTOCOL_VERSION, "agent_id": "box",
        "name": "box", "labels": ["linux"], "capacity": 1})
    .to_string();
    let url_reg = format!("{base}/api/v1/agents/register");
    assert_eq!(http("POST", &url_reg, &once, Some(&register)).0, 201);
    assert_eq!(http("POST", &url_reg, &once, Some(&register)).0, 409);
    cdp.go("#/runs", "document.querySelector('#runs')");
    cdp.go(
        "#/tokens",
        "document.querySelector('tr[data-token=\"box-once\"] .use')?.innerText.startsWith('single-use, used ')",
    );

    // A read token gets the page's error, not the form.
    let (_, body) = http(
        "POST",
        &format!("{base}/api/v1/tokens"),
        &admin,
        Some(r#"{"name": "viewer", "role": "read"}"#),
    );
    let viewer: Value = serde_json::from_str(&body).unwrap();
    // Each request reads the stored token: moving between pages is enough
    // (a reload could race the next evaluation).
    cdp.eval(&format!(
        "localStorage.setItem('hangar.token', {}); 1",
        json!(viewer["token"])
    ));
    cdp.go("#/runs", "document.querySelector('#runs')");
    cdp.go("#/tokens", "document.querySelector('#main #error')");
    assert_eq!(
        cdp.eval("document.querySelectorAll('main form [name=single_use]').length"),
        json!(0)
    );
}
