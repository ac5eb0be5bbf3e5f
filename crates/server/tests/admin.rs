//! The lifecycle the admin UI drives, against a real server on loopback: a
//! repository edited, badged and deleted with everything it kept; secrets and
//! variables listed by name only and removed; an agent drained, resumed and
//! forgotten.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const WF: &str =
    "name: build\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo ok}]\n";

async fn send(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn token(s: &TestServer, role: &str) -> String {
    let (c, v) = s
        .post(
            "/api/v1/tokens",
            json!({"name": format!("t-{role}"), "role": role}),
        )
        .await;
    assert_eq!(c, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_repository_is_edited_badged_and_deleted_with_everything_it_kept() {
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", WF)]);
    let s = start().await;
    let id = s.register("acme/app", repo.path()).await;
    assert_eq!(s.push("acme/app", repo.path(), &sha, "d0").await.0, 202);
    let run = s.runs().await[0]["id"].as_i64().unwrap();
    s.wait_run(run, Duration::from_secs(60)).await;

    // The runs list names the repository, the commit's message and its author.
    let row = &s.runs().await[0];
    assert_eq!(row["repo"], "acme/app", "{row}");
    assert_eq!(row["commit_message"], "d0", "{row}");
    assert!(row["author"].is_string(), "{row}");

    // A private repository has no badge: the same 404 as an unknown name.
    let badge = |q: &str| s.http.get(s.url(&format!("/badge/acme/app/ci.yml.svg{q}")));
    assert_eq!(badge("").send().await.unwrap().status(), 404);
    let patch = |body: Value| {
        s.http
            .patch(s.url(&format!("/api/v1/repos/{id}")))
            .bearer_auth(&s.token)
            .json(&body)
    };
    for (body, code) in [
        (json!({"forge": "svn"}), 422),
        (json!({"webhook_secret": "short"}), 400),
        (json!({"clone_url": "--upload-pack=evil"}), 400),
        (json!({"name": "renamed"}), 422),
    ] {
        let (c, v) = send(patch(body.clone())).await;
        assert_eq!(c, code, "{body}: {v}");
    }
    let (c, v) = send(patch(json!({"public": true, "webhook_secret": null}))).await;
    assert_eq!(c, 200, "{v}");
    assert_eq!(
        (v["public"].clone(), v["has_webhook_secret"].clone()),
        (json!(true), json!(false))
    );

    let r = badge("?branch=main").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = |n: &str| r.headers().get(n).unwrap().to_str().unwrap().to_string();
    assert!(h("content-type").starts_with("image/svg+xml"));
    assert!(h("cache-control").contains("max-age=60"));
    let etag = h("etag");
    let svg = r.text().await.unwrap();
    assert!(
        svg.contains(">build<") && svg.contains(">passing<"),
        "{svg}"
    );
    let r = badge("?branch=main")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let svg = badge("?branch=other")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(svg.contains(">no status<"), "{svg}");
    assert_eq!(
        s.http
            .get(s.url("/badge/acme/app/nope.yml.svg"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "a workflow that never ran has a 'no status' badge"
    );
    assert_eq!(
        s.http
            .get(s.url("/badge/acme/other/ci.yml.svg"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Secrets and variables at every level: names only, never a value.
    let put = |path: String| {
        s.http
            .put(s.url(&path))
            .bearer_auth(&s.token)
            .json(&json!({"value": "hunter2-value"}))
    };
    for path in [
        format!("/api/v1/repos/{id}/secrets/TOKEN"),
        "/api/v1/repos/0/secrets/GLOBAL".to_string(),
        format!("/api/v1/repos/{id}/variables/LEVEL"),
        format!("/api/v1/repos/{id}/environments/prod/secrets/DEPLOY_KEY"),
        format!("/api/v1/repos/{id}/environments/prod/variables/REGION"),
    ] {
        assert_eq!(send(put(path.clone())).await.0, 204, "{path}");
    }
    for (list, name) in [
        (format!("/api/v1/repos/{id}/secrets"), "TOKEN"),
        ("/api/v1/repos/0/secrets".to_string(), "GLOBAL"),
        (format!("/api/v1/repos/{id}/variables"), "LEVEL"),
        (
            format!("/api/v1/repos/{id}/environments/prod/secrets"),
            "DEPLOY_KEY",
        ),
        (
            format!("/api/v1/repos/{id}/environments/prod/variables"),
            "REGION",
        ),
    ] {
        let text = s.get_text(&list).await;
        assert!(!text.contains("hunter2"), "{list} shows a value: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["names"], json!([name]), "{list}");
    }
    let del = |path: String| s.http.delete(s.url(&path)).bearer_auth(&s.token);
    for path in [
        format!("/api/v1/repos/{id}/secrets/TOKEN"),
        format!("/api/v1/repos/{id}/variables/LEVEL"),
        format!("/api/v1/repos/{id}/environments/prod/variables/REGION"),
    ] {
        assert_eq!(send(del(path.clone())).await.0, 204, "{path}");
        assert_eq!(send(del(path.clone())).await.0, 404, "{path} twice");
    }

    // Deleting is the administrator's: a write token is refused. The UI asks
    // who it is to offer only the buttons that work.
    let write = token(&s, "write").await;
    let (c, v) = send(s.http.get(s.url("/api/v1/whoami")).bearer_auth(&write)).await;
    assert_eq!((c, v["role"].as_str()), (200, Some("write")), "{v}");
    assert_eq!(s.get("/api/v1/whoami").await["role"], "admin");
    // No watched project here: the delivery page has nothing, and says so for a name.
    assert_eq!(s.get("/api/v1/delivery").await, json!([]));
    let (c, v) = send(
        s.http
            .get(s.url("/api/v1/delivery/app/prod"))
            .bearer_auth(&write),
    )
    .await;
    assert_eq!(c, 404, "{v}");
    let (c, _) = send(
        s.http
            .delete(s.url(&format!("/api/v1/repos/{id}")))
            .bearer_auth(&write),
    )
    .await;
    assert_eq!(c, 403);
    assert_eq!(send(del(format!("/api/v1/repos/{id}"))).await.0, 204);
    assert_eq!(send(del(format!("/api/v1/repos/{id}"))).await.0, 404);
    let (c, _) = send(
        s.http
            .get(s.url(&format!("/api/v1/runs/{run}")))
            .bearer_auth(&s.token),
    )
    .await;
    assert_eq!(c, 404, "its runs went with it");
    assert_eq!(
        s.http
            .get(s.url("/badge/acme/app/ci.yml.svg"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let audit = s.get("/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "repo.delete"),
        "{audit}"
    );

    // Registered again under the same name, it starts afresh: the same push
    // is a new delivery, not a duplicate of the deleted repository's.
    s.register("acme/app", repo.path()).await;
    let (c, v) = s.push("acme/app", repo.path(), &sha, "d0").await;
    assert_eq!(c, 202, "{v}");
    assert_eq!(s.runs().await.len(), 1);
}

/// One long poll as a remote agent; the assignment, if any.
async fn poll(s: &TestServer, token: &str, agent: &str, wait_ms: u64) -> Option<Value> {
    let r = s
        .http
        .post(s.url("/api/v1/agent/poll"))
        .bearer_auth(token)
        .json(
            &json!({"protocol_version": hangar_agent::PROTOCOL_VERSION, "agent_id": agent, "name": agent, "labels": ["ubuntu-latest"],
                      "capacity": 1, "free_slots": 1, "wait_ms": wait_ms}),
        )
        .send()
        .await
        .unwrap();
    (r.status() == 200).then_some(())?;
    Some(r.json().await.unwrap())
}

#[tokio::test]
async fn a_drained_agent_takes_no_job_until_resumed_and_a_removed_one_hands_its_job_back() {
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", WF)]);
    let s = start_with(|c| c.embedded_capacity = 0).await;
    s.register("acme/app", repo.path()).await;
    let token = token(&s, "agent").await;
    // Registering lists the agent; a poll alone never does.
    let agent = s.agent_credential(&token, "remote-1").await;
    assert!(poll(&s, &agent, "remote-1", 10).await.is_none());
    assert_eq!(s.push("acme/app", repo.path(), &sha, "d0").await.0, 202);

    let post = |path: &str| s.http.post(s.url(path)).bearer_auth(&s.token);
    let (c, v) = send(post("/api/v1/agents/remote-1/drain")).await;
    assert_eq!((c, v["drained"].clone()), (200, json!(true)), "{v}");
    assert_eq!(send(post("/api/v1/agents/nobody/drain")).await.0, 404);
    let agents = s.get("/api/v1/agents").await;
    assert_eq!(agents[0]["drained"], true, "{agents}");
    assert!(
        poll(&s, &agent, "remote-1", 500).await.is_none(),
        "a drained agent is given no job"
    );

    let (c, v) = send(post("/api/v1/agents/remote-1/resume")).await;
    assert_eq!((c, v["drained"].clone()), (200, json!(false)), "{v}");
    let job = poll(&s, &agent, "remote-1", 2000)
        .await
        .expect("a job once resumed");
    let job_id = job["job_id"].as_i64().unwrap();

    // Removed while it holds the job: the job goes back to the queue and
    // the agent's credential opens nothing, so it cannot finish it.
    let del = || {
        s.http
            .delete(s.url("/api/v1/agents/remote-1"))
            .bearer_auth(&s.token)
    };
    let (c, v) = send(del()).await;
    assert_eq!(c, 204, "{v}");
    let (c, v) = send(
        s.http
            .post(s.url(&format!("/api/v1/agent/jobs/{job_id}/complete")))
            .bearer_auth(&agent)
            .header("x-hangar-lease", job["lease_key"].as_str().unwrap())
            .json(&json!({"fence": job["fence"], "conclusion": "success", "outputs": {}})),
    )
    .await;
    assert_eq!(c, 401, "{v}");
    assert_eq!(v["code"], "agent_removed", "{v}");
    let run = s.runs().await[0]["id"].as_i64().unwrap();
    let jobs = s.get(&format!("/api/v1/runs/{run}")).await["jobs"].clone();
    assert_eq!(jobs[0]["status"], "queued", "{jobs:#}");
    // Its polls do not bring it back.
    assert!(poll(&s, &agent, "remote-1", 200).await.is_none());
    let agents = s.get("/api/v1/agents").await;
    assert!(agents.as_array().unwrap().is_empty(), "{agents}");
    assert_eq!(send(del()).await.0, 404);
    // The token is reusable: it registers a new agent, which takes the job.
    let second = s.agent_credential(&token, "remote-2").await;
    let again = poll(&s, &second, "remote-2", 2000)
        .await
        .expect("the handed-back job");
    assert_eq!(again["job_id"], job_id);
    let audit = s.get("/api/v1/audit").await;
    let removed = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "agent.removed")
        .expect("the removal is audited");
    assert_eq!(removed["target"], "agent/remote-1");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "agent.registered" && e["target"] == "agent/remote-2"),
        "{audit:#}"
    );
}

#[tokio::test]
async fn a_rerun_keeps_each_earlier_attempt_with_its_steps_and_conclusion() {
    let (repo, sha) = repo_with(&[(
        ".github/workflows/ci.yml",
        "name: build\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - {name: ok, run: echo ok}\n      - {name: breaks, run: exit 3}\n",
    )]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    assert_eq!(s.push("acme/app", repo.path(), &sha, "d0").await.0, 202);
    let run = s.runs().await[0]["id"].as_i64().unwrap();
    let first = s.wait_run(run, Duration::from_secs(60)).await;
    assert_eq!(first["run"]["conclusion"], "failure");
    assert_eq!(first["jobs"][0]["attempt_history"], json!([]));
    let (c, v) = s
        .post(
            &format!("/api/v1/runs/{run}/rerun"),
            json!({"jobs": "failed"}),
        )
        .await;
    assert_eq!(c, 202, "{v}");
    let start = std::time::Instant::now();
    let again = loop {
        let v = s.get(&format!("/api/v1/runs/{run}")).await;
        if v["run"]["status"] == "completed" && v["run"]["attempt"] == 2 {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let job = &again["jobs"][0];
    let history = job["attempt_history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{job}");
    assert_eq!(history[0]["attempt"], 1);
    assert_eq!(history[0]["conclusion"], "failure");
    assert_eq!(history[0]["failed_step"], "breaks");
    assert!(history[0]["steps"].as_array().unwrap().len() >= 2, "{job}");
}
