//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, written by hand: the
//! API is small, and a derive framework would cost more build time than it saves.
//! Every route of `lib.rs::router` is here with its request and response
//! schemas and the statuses it really answers; the suite validates the
//! document (openapi-spec-validator) and runs schemathesis against a live
//! server with it (`crates/hangar/tests/api_contract.rs`).

use serde_json::{Map, Value, json};

/// A schema reference.
fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

fn int() -> Value {
    json!({"type": "integer"})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn opt(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

/// An object with these required properties (more may come: clients ignore them).
fn object(props: &[(&str, Value)]) -> Value {
    let mut p = Map::new();
    for (k, v) in props {
        p.insert((*k).into(), v.clone());
    }
    let required: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
    json!({"type": "object", "required": required, "properties": p})
}

fn error_response(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": r("Error")}}})
}

/// One operation, built up: its responses start with what every
/// authenticated route answers.
struct Op(Value);

fn op(summary: &str, tag: &str) -> Op {
    Op(json!({
        "summary": summary,
        "tags": [tag],
        "responses": {
            "400": error_response("a path or query parameter is not of its type (`invalid_path`, `invalid_query`)"),
            "401": error_response("missing, unknown, expired or revoked token (`unauthorized`)"),
            "403": error_response("the token's role does not reach this route (`forbidden`)"),
        }
    }))
}

impl Op {
    fn ok(mut self, status: &str, desc: &str, schema: Value) -> Op {
        self.0["responses"][status] =
            json!({"description": desc, "content": {"application/json": {"schema": schema}}});
        self
    }
    fn ok_as(mut self, status: &str, desc: &str, media: &str, schema: Value) -> Op {
        self.0["responses"][status] =
            json!({"description": desc, "content": {media: {"schema": schema}}});
        self
    }
    fn empty(mut self, status: &str, desc: &str) -> Op {
        self.0["responses"][status] = json!({"description": desc});
        self
    }
    fn err(mut self, status: &str, desc: &str) -> Op {
        self.0["responses"][status] = error_response(desc);
        self
    }
    /// A JSON request body; a body that is not JSON, not of the schema, or too large is refused.
    fn body(mut self, schema: Value, required: bool) -> Op {
        self.0["requestBody"] =
            json!({"required": required, "content": {"application/json": {"schema": schema}}});
        self.err("400", "a parameter or the body is not JSON (`invalid_json`, `invalid_query`, `invalid_path`), or a value is refused")
            .err("413", "the body is over 64 MiB (`payload_too_large`)")
            .err("415", "the body is not `Content-Type: application/json` (`unsupported_media_type`)")
            .err("422", "the body is not of the schema (`invalid_body`), or a value is refused")
    }
    fn raw_body(mut self) -> Op {
        self.0["requestBody"] = json!({"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}});
        self.err("413", "the body is over 64 MiB (`payload_too_large`)")
    }
    fn query(mut self, name: &str, schema: Value, desc: &str) -> Op {
        let p = json!({"name": name, "in": "query", "required": false, "schema": schema, "description": desc});
        match self.0["parameters"].as_array_mut() {
            Some(list) => list.push(p),
            None => self.0["parameters"] = json!([p]),
        }
        self
    }
    /// A list: `limit` and `cursor`, the page's headers, `invalid_cursor`.
    fn paged(self, desc: &str, items: Value) -> Op {
        let mut o = self
            .query("limit", json!({"type": "integer", "minimum": 1, "maximum": 500}), "items per page (default 100, 50 for runs; larger values are capped at 500)")
            .query("cursor", string(), "where the page starts: the `cursor` of the previous page's `Link: rel=\"next\"` (opaque)")
            .ok("200", desc, items)
            .err("400", "a parameter is not of its type (`invalid_query`, `invalid_path`), or `cursor` is not one this server made (`invalid_cursor`)");
        o.0["responses"]["200"]["headers"] = json!({
            "X-Total-Count": {"description": "how many items the filters match, on every page", "schema": int()},
            "Link": {"description": "`<url>; rel=\"next\"` when another page follows", "schema": string()},
            "X-Next-Cursor": {"description": "the next page's `cursor`, when another page follows", "schema": string()}
        });
        o
    }
    fn public(mut self) -> Op {
        self.0["security"] = json!([]);
        if let Some(r) = self.0["responses"].as_object_mut() {
            r.remove("401");
            r.remove("403");
        }
        self
    }
}

fn schemas() -> Value {
    let millis = json!({"type": "integer", "description": "milliseconds since the Unix epoch"});
    let names = object(&[("names", array(string()))]);
    let mut forge = object(&[
        ("repo_id", int()),
        ("kind", string()),
        ("api_url", string()),
        ("project", string()),
        (
            "report",
            json!({"type": "string", "enum": ["statuses", "checks"]}),
        ),
        ("has_token", json!({"type": "boolean"})),
    ]);
    // Only with a GitHub App.
    forge["properties"]["app_id"] = string();
    forge["properties"]["installation_id"] = json!({"type": ["integer", "null"]});
    forge["properties"]["has_private_key"] = json!({"type": "boolean"});
    json!({
        "Error": {"type": "object", "required": ["error", "code"], "properties": {
            "error": {"type": "string", "description": "what went wrong and what to do"},
            "code": {"type": "string", "description": "stable: bad_request, invalid_query, invalid_path, invalid_json, invalid_body, invalid_cursor, unauthorized, forbidden, not_found, method_not_allowed, conflict, gone, payload_too_large, unsupported_media_type, unprocessable, too_many_requests, internal, …"}}},
        "Repo": object(&[("id", int()), ("name", string()), ("clone_url", string()), ("forge", string()), ("has_webhook_secret", json!({"type": "boolean"})), ("created_at", millis.clone()), ("public", json!({"type": "boolean"}))]),
        "Run": object(&[("id", int()), ("repo_id", int()), ("workflow_path", string()), ("workflow_name", string()), ("event", string()), ("git_ref", string()), ("sha", string()),
            ("status", json!({"type": "string", "enum": hangar_store::Status::ALL})), ("conclusion", opt("string")), ("attempt", int()), ("created_at", millis.clone()),
            ("started_at", opt("integer")), ("finished_at", opt("integer")), ("actor", string()), ("run_number", int())]),
        "RunRow": {"allOf": [r("Run"), {"type": "object", "required": ["repo", "commit_message", "author"], "properties": {
            "repo": opt("string"), "commit_message": {"type": ["string", "null"], "description": "the first line of the head commit's message, or the pull request's title"},
            "author": {"type": "string", "description": "the head commit's author, the pull request's author, or who triggered the run"}}}]},
        "RunDetail": object(&[("run", r("Run")), ("repo", json!({"oneOf": [r("Repo"), {"type": "null"}]})), ("jobs", array(json!({"allOf": [r("Job"), object(&[("needs", array(string())), ("graph_needs", json!({"type": "array", "items": string(), "description": "the job keys the run graph draws a line from: `needs`, with a called workflow's last jobs standing for a caller (callers are not listed), and a called workflow's first jobs drawn from what their caller needs"}))])]}))), ("artifacts", array(r("Artifact"))), ("held", json!({"type": "boolean"})),
            ("errors", json!({"type": "array", "items": r("WorkflowError"), "description": "a run refused at intake (an invalid workflow file the event would have triggered, a pull request head that could not be read), which has no jobs: what is wrong; empty for other runs"})),
            ("refused", json!({"oneOf": [object(&[("title", string()), ("rerun", string())]), {"type": "null"}], "description": "a refused run's title (`Invalid workflow file: PATH#L7`) and why re-running it does not help"}))]),
        "WorkflowError": object(&[("file", opt("string")), ("line", opt("integer")), ("column", opt("integer")), ("message", string())]),
        "Job": object(&[("id", int()), ("run_id", int()), ("key", string()), ("name", string()), ("status", string()), ("conclusion", opt("string")), ("attempt", int()), ("continue_on_error", json!({"type": "boolean", "description": "`continue-on-error` as evaluated when the job was queued: its failure is shown as one, but neither fails the run nor the jobs that need it"}))]),
        "Artifact": object(&[("id", int()), ("run_id", int()), ("name", string()), ("digest", string()), ("size", int()), ("created_at", millis.clone())]),
        "Approval": object(&[("id", int()), ("job_id", int()), ("run_id", int()), ("environment", string()), ("state", string()), ("reviewer", opt("string")), ("comment", opt("string")), ("created_at", millis.clone()), ("decided_at", opt("integer"))]),
        "Agent": object(&[("id", string()), ("name", string()), ("labels", array(string())), ("capacity", int()), ("connected", json!({"type": "boolean"})), ("embedded", json!({"type": "boolean"})), ("drained", json!({"type": "boolean"}))]),
        "Delivery": object(&[("id", int()), ("delivery_id", string()), ("repo_id", opt("integer")), ("event", string()), ("outcome", string()), ("run_ids", array(int())), ("received_at", millis.clone())]),
        "AuditEntry": object(&[("id", int()), ("at", millis.clone()), ("actor", string()), ("action", string()), ("target", string()), ("detail", json!({}))]),
        "Deployment": object(&[("id", int()), ("run_id", int()), ("job_id", int()), ("environment", string()), ("sha", string()), ("status", string()), ("created_at", millis.clone())]),
        "Outbound": object(&[("id", int()), ("kind", string()), ("repo_id", opt("integer")), ("run_id", opt("integer")), ("target", string()), ("subject", string()), ("state", string()), ("attempts", int()), ("outcome", string()), ("http_status", opt("integer")), ("error", opt("string")), ("at", millis.clone())]),
        "Token": object(&[("id", int()), ("name", string()), ("role", json!({"type": "string", "enum": ["admin", "write", "read", "agent"]})), ("created_at", millis.clone()), ("expires_at", opt("integer")), ("revoked_at", opt("integer")), ("reusable", json!({"type": "boolean"})), ("used_at", opt("integer"))]),
        "TokenCreated": object(&[("id", int()), ("token", json!({"type": "string", "description": "shown once"})), ("name", string()), ("role", string()), ("expires_at", opt("integer"))]),
        "NotificationRule": object(&[("id", int()), ("repo_id", opt("integer")), ("events", array(string())), ("channel", string()), ("host", string()), ("signed", json!({"type": "boolean"})), ("created_at", millis)]),
        "Forge": forge,
        "GitHubApp": object(&[("app_id", string()), ("api_url", string()), ("has_private_key", json!({"type": "boolean"})), ("has_webhook_secret", json!({"type": "boolean"})),
            ("webhook_url", json!({"type": "string", "description": "where the App's webhook must point"})),
            ("installations", array(object(&[("repository", string()), ("installation_id", int())])))]),
        "Names": names,
        "DeliveryEnvironment": object(&[("project", string()), ("project_id", string()), ("env", string()), ("running", json!({"type": "boolean"})),
            ("status", json!({"type": ["object", "null"], "description": "the controller's status (services: versions, weights, rollout, instances, traffic per version); null when it does not run"})),
            ("stable", json!({"type": "object"})), ("history", array(json!({"type": "object"})))]),
        "Value": {"type": "object", "required": ["value"], "properties": {"value": string()}},
    })
}

/// Every path with its operations.
fn paths() -> Vec<(&'static str, Vec<(&'static str, Op)>)> {
    let name_rule = "1 to 100 of A-Z a-z 0-9 . _ - (no `..`); 400 otherwise";
    let notification = json!({"type": "object", "required": ["events", "channel", "url"], "additionalProperties": false, "properties": {
        "repo_id": int(),
        "events": array(json!({"type": "string", "enum": hangar_project::NOTIFICATION_EVENTS})),
        "channel": {"type": "string", "enum": ["slack", "teams", "webhook", "email"]},
        "url": string(), "secret": string()}});
    let agent = |summary: &str| {
        op(summary, "agent")
            .err("404", "no such job")
            .err("409", "the lease is lost or the fence is stale")
    };
    vec![
        ("/healthz", vec![("get", op("Liveness (no token)", "ops").public().ok_as("200", "ok", "text/plain", string()))]),
        ("/readyz", vec![("get", op("Readiness (no token): the database answers at this build's schema version and the server is not shutting down", "ops").public()
            .ok("200", "ready", object(&[("ready", json!({"type": "boolean", "const": true})), ("schema_version", int())]))
            .err("503", "not ready: `draining`, `database_unavailable` or `schema_mismatch`, with why"))]),
        ("/metrics", vec![("get", op("OpenMetrics: queue, agents, jobs, DORA gauges", "ops").ok_as("200", "metrics", "application/openmetrics-text", string()))]),
        ("/api/v1/openapi.json", vec![("get", op("This document", "ops").ok("200", "the OpenAPI document", json!({"type": "object"})))]),
        ("/hooks/{forge}", vec![("post", op("Forge webhook (github, gitea, forgejo, gitlab); authenticated by its signature or token", "hooks").public()
            .query("repo", string(), "the registered repository, when the payload does not name it")
            .ok("202", "runs queued", json!({"type": "object"})).ok("200", "a duplicate delivery, or nothing to do", json!({"type": "object"}))
            .err("401", "bad signature").err("404", "no such forge or repository").err("413", "over GitHub's 25 MB").err("422", "a payload that is not the forge's"))]),
        ("/api/v1/repos", vec![
            ("get", op("Repositories, oldest first", "repos").paged("repositories", array(r("Repo")))),
            ("post", op("Register a repository", "repos").body(object(&[("name", string()), ("clone_url", string())]), true).ok("201", "registered", r("Repo")).err("409", "the name is taken"))]),
        ("/api/v1/repos/{id}", vec![
            ("get", op("A repository", "repos").ok("200", "the repository", r("Repo")).err("404", "no such repository")),
            ("patch", op("Change a repository's clone URL, forge, webhook secret (null: accept no webhooks) or whether its badges are public; its name stays", "repos")
                .body(json!({"type": "object", "additionalProperties": false, "properties": {
                    "clone_url": string(), "forge": {"type": "string", "enum": ["github", "gitea", "forgejo", "gitlab", "local"]},
                    "webhook_secret": {"type": ["string", "null"], "minLength": 16}, "public": {"type": "boolean"}}}), true)
                .ok("200", "changed", r("Repo")).err("404", "no such repository")),
            ("delete", op("Remove a repository with its runs, logs, secrets, variables, environments and rules", "repos")
                .empty("204", "removed").err("404", "no such repository").err("409", "it has runs in progress, or this server watches it"))]),
        ("/api/v1/repos/{id}/dispatch", vec![("post", op("workflow_dispatch: start a workflow at a ref with typed inputs", "runs")
            .body(json!({"type": "object", "required": ["workflow"], "properties": {"workflow": string(), "ref": string(), "inputs": {"type": "object"}}}), true)
            .ok("201", "the run", object(&[("run", int())])).err("404", "no such repository or workflow")
            .ok("422", "an invalid workflow file (`invalid_workflow`), with its errors; nothing started", json!({"allOf": [r("Error"), object(&[("errors", array(r("WorkflowError")))])]})))]),
        ("/api/v1/repos/{id}/workflows", vec![("get", op("Workflows at a ref (default: HEAD) with their workflow_dispatch inputs", "runs")
            .query("ref", string(), "a branch, tag or commit")
            .ok("200", "workflows", object(&[("ref", string()), ("sha", string()), ("workflows", array(json!({"type": "object"})))])).err("404", "no such repository"))]),
        ("/api/v1/repos/{id}/secrets", vec![("get", op("Secret names (never values); id 0 = global", "secrets").paged("names", r("Names")))]),
        ("/api/v1/repos/{id}/secrets/{name}", vec![
            ("put", op(&format!("Set a secret; names: {name_rule}"), "secrets").body(r("Value"), true).empty("204", "stored")),
            ("delete", op("Remove a secret (id 0 = global)", "secrets").empty("204", "removed").err("404", "no such secret"))]),
        ("/api/v1/repos/{id}/variables", vec![("get", op("Variable names (values are write-only); id 0 = global", "secrets").paged("names", r("Names")))]),
        ("/api/v1/repos/{id}/variables/{name}", vec![
            ("put", op(&format!("Set a variable; names: {name_rule}"), "secrets").body(r("Value"), true).empty("204", "stored")),
            ("delete", op("Remove a variable (id 0 = global)", "secrets").empty("204", "removed").err("404", "no such variable"))]),
        ("/api/v1/repos/{id}/forge", vec![
            ("get", op("Where the repository's commit statuses go", "repos").ok("200", "the forge", r("Forge")).err("404", "reports to no forge")),
            ("put", op("Report commit statuses (or, on GitHub, check runs with annotations) to the forge; a token or a GitHub App (`app_id`, `private_key`, optional `installation_id`); token and key are sealed and write-only", "repos")
                .body(json!({"type": "object", "properties": {"token": string(), "kind": {"type": "string", "enum": ["github", "gitea", "forgejo", "gitlab"]}, "api_url": string(), "project": string(),
                    "report": {"type": "string", "enum": ["statuses", "checks"]}, "app_id": {"type": ["string", "integer"]}, "installation_id": {"type": "integer", "minimum": 0}, "private_key": string()}}), true)
                .ok("200", "stored", r("Forge")).err("404", "no such repository").err("422", "a credential the forge cannot take")),
            ("delete", op("Stop reporting commit statuses", "repos").empty("204", "removed").err("404", "none set"))]),
        ("/api/v1/github-app", vec![
            ("get", op("The server-wide GitHub App (admin): every GitHub repository it is installed on and that has no credential of its own reports check runs through it", "repos").ok("200", "the App", r("GitHubApp")).err("404", "none registered")),
            ("put", op("Register or replace the server-wide GitHub App (admin); the key and the webhook secret are sealed and write-only (absent: the stored ones are kept; `webhook_secret: null` removes it)", "repos")
                .body(json!({"type": "object", "required": ["app_id"], "additionalProperties": false, "properties": {"app_id": {"type": ["string", "integer"]}, "private_key": string(),
                    "webhook_secret": {"type": ["string", "null"], "minLength": 16}, "api_url": string()}}), true)
                .ok("200", "stored", r("GitHubApp")).err("422", "a key that does not sign, a short webhook secret, a bad API root")),
            ("delete", op("Remove the server-wide GitHub App (admin)", "repos").empty("204", "removed").err("404", "none registered"))]),
        ("/api/v1/repos/{id}/settings", vec![
            ("get", op("The repository's settings", "repos").ok("200", "settings", object(&[("approval_policy", string())])).err("404", "no such repository")),
            ("put", op("Which untrusted pull requests wait for an approval before they run", "repos")
                .body(json!({"type": "object", "required": ["approval_policy"], "properties": {"approval_policy": {"type": "string", "enum": ["none", "first-time", "untrusted"]}}}), true)
                .ok("200", "stored", object(&[("approval_policy", string())])).err("404", "no such repository"))]),
        ("/api/v1/repos/{id}/environments/{env}/secrets", vec![("get", op("Names of an environment's secrets", "secrets").paged("names", r("Names")))]),
        ("/api/v1/repos/{id}/environments/{env}/secrets/{name}", vec![
            ("put", op(&format!("Set an environment's secret, released only to its jobs once they passed its protection; names: {name_rule}"), "secrets").body(r("Value"), true).empty("204", "stored").err("404", "no such repository")),
            ("delete", op("Remove an environment's secret", "secrets").empty("204", "removed").err("404", "no such secret"))]),
        ("/api/v1/repos/{id}/environments/{env}/variables", vec![("get", op("Names of an environment's variables", "secrets").paged("names", r("Names")))]),
        ("/api/v1/repos/{id}/environments/{env}/variables/{name}", vec![
            ("put", op(&format!("Set an environment's variable; names: {name_rule}"), "secrets").body(r("Value"), true).empty("204", "stored").err("404", "no such repository")),
            ("delete", op("Remove an environment's variable", "secrets").empty("204", "removed").err("404", "no such variable"))]),
        ("/api/v1/runs", vec![("get", op("Runs, newest first", "runs")
            .query("repo", int(), "repository id")
            .query("workflow", string(), "workflow name, path, or file name under .github/workflows/")
            .query("branch", string(), "short branch name (also a pull request's head branch) or full ref")
            .query("event", string(), "push, pull_request, workflow_dispatch, schedule, …")
            .query("status", json!({"type": "string", "enum": hangar_store::Status::ALL}), "")
            .query("conclusion", json!({"type": "string", "enum": hangar_store::Conclusion::ALL}), "")
            .query("commit", string(), "a commit id or its prefix")
            .query("actor", string(), "who triggered the run")
            .query("pull_request", int(), "the pull request's number")
            .paged("runs", array(r("RunRow"))))]),
        ("/api/v1/runs/{id}", vec![("get", op("A run with its jobs, steps, approvals and why each job waits; a job that called a reusable workflow is not listed (as on GitHub): its called jobs are, keyed and named `caller / callee`", "runs").ok("200", "the run", r("RunDetail")).err("404", "no such run"))]),
        ("/api/v1/runs/{id}/cancel", vec![("post", op("Cancel a run (reaches running processes)", "runs").empty("202", "cancelling").err("404", "no such run"))]),
        ("/api/v1/runs/{id}/rerun", vec![("post", op("Re-run all jobs, the failed ones, or one", "runs")
            .body(json!({"type": "object", "properties": {"jobs": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}}), false)
            .ok("202", "re-run", object(&[("jobs", array(int()))])).err("409", "nothing to re-run, the run is in progress, or it is a refused run (an invalid workflow file: fix it in a new commit)"))]),
        ("/api/v1/runs/{id}/approve", vec![("post", op("Approve and run: start a run held for approval (an untrusted pull request)", "runs")
            .empty("202", "started").err("404", "no such run").err("409", "not held, or completed"))]),
        ("/api/v1/runs/{id}/events", vec![("get", op("Server-sent events: job, step, log and run changes (an endless stream)", "runs")
            .query("access_token", string(), "a stream token (for EventSource, which sends no headers)")
            .ok_as("200", "the stream", "text/event-stream", string()).err("404", "no such run"))]),
        ("/api/v1/runs/{id}/events/token", vec![("post", op("A stream token for this run's live stream, valid 60 s", "runs")
            .ok("200", "the token", object(&[("token", string()), ("expires_in", int())])).err("404", "no such run"))]),
        ("/api/v1/runs/{id}/artifacts", vec![("get", op("Artifacts of a run", "artifacts").paged("artifacts", array(r("Artifact"))).err("404", "no such run"))]),
        ("/api/v1/runs/{id}/artifacts/{name}", vec![
            ("get", op("Download an artifact", "artifacts").ok_as("200", "its bytes", "application/octet-stream", json!({"type": "string", "format": "binary"}))
                .err("404", "no such artifact").err("410", "its bytes are gone from the data directory")),
            ("post", op("Upload an artifact (body = bytes)", "artifacts").raw_body().ok("201", "stored", object(&[("id", int()), ("digest", string())])).err("404", "no such run"))]),
        ("/api/v1/jobs/{id}/logs", vec![("get", op("Log lines [from, to) as JSON: each [number, text, step] (step null: a line of no step); with `step`, that step's lines numbered from 0 within it as [number, text, number in the job's log]", "logs")
            .query("from", int(), "first line").query("to", int(), "line after the last (at most from + 10000)").query("attempt", int(), "an earlier attempt; default the latest")
            .query("step", string(), "only this step's lines: its index in the job's steps, `none` for the lines of no step (the job's set-up), `complete` (or -1) for its \"Complete job\"")
            .ok("200", "lines", object(&[("from", int()), ("total", int()), ("lines", array(json!({"type": "array"})))])).err("400", "`step` is neither an index nor `none`"))]),
        ("/api/v1/jobs/{id}/logs/raw", vec![("get", op("The whole log as text", "logs").query("attempt", int(), "an earlier attempt; default the latest")
            .ok_as("200", "the log", "text/plain", string()))]),
        ("/api/v1/approvals", vec![("get", op("Approvals, newest first", "approvals").query("pending", json!({"type": "boolean"}), "only pending ones (default true)")
            .paged("approvals", array(r("Approval"))))]),
        ("/api/v1/approvals/{id}", vec![("post", op("Approve or reject a deployment to a protected environment", "approvals")
            .body(json!({"type": "object", "required": ["approve"], "properties": {"approve": {"type": "boolean"}, "comment": string()}}), true)
            .ok("200", "decided", r("Approval")).err("404", "no such approval").err("409", "already decided, or the run is completed"))]),
        ("/api/v1/agents", vec![("get", op("Agents", "agents").paged("agents", array(r("Agent"))))]),
        ("/api/v1/agents/register", vec![("post", op("Register an agent (an agent or admin token): its id and its credential, shown once; the agent protocol takes that credential only", "agent")
            .body(json!({"type": "object", "required": ["name", "labels", "capacity"], "properties": {"protocol_version": int(), "hangar_version": string(),
                "agent_id": string(), "name": string(), "labels": array(string()), "capacity": int()}}), true)
            .ok("201", "registered", object(&[("agent_id", string()), ("credential", string())]))
            .err("400", "a bad name, label or capacity").err("409", "a single-use token already used (code `token_used`), or another protocol version (code `protocol_mismatch`)"))]),
        ("/api/v1/agents/{agent}", vec![("delete", op("Remove an agent for good: its credential is deleted (its next call answers 401), its jobs go back to the queue, a single-use token that registered it is revoked", "agents")
            .empty("204", "removed").err("404", "no such agent").err("409", "the embedded agent of a running server"))]),
        ("/api/v1/agents/{agent}/drain", vec![("post", op("Drain an agent: it finishes its jobs and is given no new one", "agents")
            .ok("200", "drained", object(&[("id", string()), ("name", string()), ("drained", json!({"type": "boolean"}))])).err("404", "no such agent"))]),
        ("/api/v1/agents/{agent}/resume", vec![("post", op("Put a drained agent back in service", "agents")
            .ok("200", "in service", object(&[("id", string()), ("name", string()), ("drained", json!({"type": "boolean"}))])).err("404", "no such agent"))]),
        ("/badge/{path}", vec![("get", op("Status badge of a public repository's workflow: /badge/{repo}/{workflow file}.svg (no token)", "repos").public()
            .query("branch", string(), "a branch (default: any)")
            .ok_as("200", "the badge", "image/svg+xml", string()).empty("304", "unchanged since the ETag sent in If-None-Match")
            .err("404", "no such repository or workflow, or the repository is not public"))]),
        ("/api/v1/deliveries", vec![("get", op("Webhook deliveries, newest first", "ops").paged("deliveries", array(r("Delivery"))))]),
        ("/api/v1/audit", vec![("get", op("Audit log, newest first (admin)", "ops").paged("entries", array(r("AuditEntry"))))]),
        ("/api/v1/deployments", vec![("get", op("Deployments by workflow jobs, newest first", "ops").paged("deployments", array(r("Deployment"))))]),
        ("/api/v1/usage", vec![("get", op("Bytes kept on disk per repository (logs, artifacts, caches) and the retention in force", "ops")
            .ok("200", "usage", object(&[("total_bytes", int()), ("retention", json!({"type": "object"})),
                ("repos", array(object(&[("repo_id", opt("integer")), ("repo", opt("string")), ("logs_bytes", int()), ("artifacts_bytes", int()), ("caches_bytes", int()), ("total_bytes", int())])))])))]),
        ("/api/v1/outbound", vec![("get", op("What the server sent out (commit statuses, notifications), newest first", "ops")
            .query("kind", json!({"type": "string", "enum": ["status", "notification"]}), "").paged("entries", array(r("Outbound"))))]),
        ("/api/v1/notifications", vec![
            ("get", op("Notification rules (URLs shown by host only)", "notifications").paged("rules", array(r("NotificationRule")))),
            ("post", op("Add a rule", "notifications").body(notification, true).ok("201", "created", r("NotificationRule")).err("404", "no such repository"))]),
        ("/api/v1/notifications/{id}", vec![("delete", op("Remove a rule", "notifications").empty("204", "removed").err("404", "no such rule"))]),
        ("/api/v1/tokens", vec![
            ("get", op("Tokens (never values; admin)", "ops").paged("tokens", array(r("Token")))),
            ("post", op("Create a token (admin)", "ops").body(json!({"type": "object", "required": ["name", "role"], "properties": {
                "name": string(), "role": {"type": "string", "enum": ["admin", "write", "read", "agent"]},
                "expires_in": {"type": "integer", "description": "seconds"}, "repos": array(string()), "labels": array(string()),
                "reusable": {"type": "boolean", "description": "agent tokens: false registers one agent, and is revoked when it is removed (default true)"}}}), true)
                .ok("201", "created: the value is shown once", r("TokenCreated")))]),
        ("/api/v1/tokens/{id}", vec![("delete", op("Revoke a token: it answers 401 from now on", "ops").empty("204", "revoked").err("404", "no such token, or already revoked"))]),
        ("/api/v1/whoami", vec![("get", op("The caller's token name and role", "ops").ok("200", "the caller", object(&[("name", string()), ("role", json!({"type": "string", "enum": ["admin", "write", "read", "agent"]}))])))]),
        ("/api/v1/delivery", vec![("get", op("Every watched project's environments: live status (versions, weights, instances, traffic and errors per version) and history", "delivery")
            .ok("200", "environments", array(r("DeliveryEnvironment"))))]),
        ("/api/v1/delivery/{project}/{env}", vec![
            ("get", op("One environment: live status and its last 50 deployments, newest first, with every decision. `project` is the watched project's id (`project_id`), or its folder name when no other watched project shares it", "delivery")
                .ok("200", "the environment", r("DeliveryEnvironment")).err("404", "no such project or environment").err("409", "the folder name names several watched projects: `candidates` lists their ids")),
            ("post", op("Deploy, roll back or promote a watched project's environment through its controller", "delivery")
            .body(json!({"type": "object"}), true).ok("202", "the operation", json!({"type": "object"})).ok("200", "a request other than a deployment: the controller's answer", json!({})).err("404", "no such project").err("409", "busy, or the folder name names several watched projects (`candidates`)").err("502", "the controller failed").err("503", "the controller cannot be reached")),
        ]),
        ("/api/v1/delivery/operations/{id}", vec![("get", op("A delivery operation's progress", "delivery").ok("200", "the operation", json!({"type": "object"})).err("404", "no such operation"))]),
        ("/api/v1/delivery/operations/{id}/approve", vec![("post", op("A reviewer approves or rejects a protected environment's delivery operation (never the token that asked for it when the environment prevents self-review)", "delivery")
            .body(json!({"type": "object", "required": ["approve"], "properties": {"approve": {"type": "boolean"}, "comment": string()}}), true)
            .ok("200", "the operation", json!({"type": "object"})).err("403", "not a reviewer, or self-review (code `self_review`)").err("404", "no such operation").err("409", "no approval to decide"))]),
        ("/api/v1/jobs/{id}/deploy/{env}", vec![("post", op("A running job's `hangar/deploy`: deploys the job's own environment of its repository's watched checkout at the job's commit (no token: the deployment key of the job's attempt in `X-Hangar-Deploy`; the request's commit and artifact are not read)", "delivery").public()
            .body(json!({"type": "object"}), true).ok("202", "the operation", json!({"type": "object"})).err("400", "not a deployment").err("403", "not the key of a running job, another environment, a fork's job, or a repository the server does not watch").err("422", "the job's commit is not in the watched checkout"))]),
        ("/api/v1/jobs/{id}/deploy/operations/{op}", vec![("get", op("A job's own deployment's progress (the job's deployment key in `X-Hangar-Deploy`)", "delivery").public()
            .ok("200", "the operation", json!({"type": "object"})).err("403", "not the key of a running job").err("404", "no such deployment of this job"))]),
        ("/api/v1/agent/poll", vec![("post", op("Agent: long-poll for a job (up to its `wait`)", "agent").body(json!({"type": "object"}), true)
            .ok("200", "a job", json!({"type": "object"})).empty("204", "no job within the wait"))]),
        ("/api/v1/agent/jobs/{id}/heartbeat", vec![("post", agent("Agent: extend the lease").body(json!({"type": "object", "required": ["fence"], "properties": {"fence": int()}}), true).ok("200", "extended", json!({"type": "object"})))]),
        ("/api/v1/agent/jobs/{id}/logs", vec![("post", agent("Agent: one log chunk").body(json!({"type": "object"}), true).ok("200", "stored", json!({"type": "object"})))]),
        ("/api/v1/agent/jobs/{id}/steps", vec![("post", agent("Agent: a step started or finished").body(json!({"type": "object"}), true).ok("200", "stored", json!({"type": "object"})))]),
        ("/api/v1/agent/jobs/{id}/refuse", vec![("post", agent("Agent: refuse an assignment of another protocol version (the job is queued again, or fails when no agent of this version can take it)").body(json!({"type": "object", "required": ["fence", "protocol_version"], "properties": {"fence": int(), "protocol_version": int(), "hangar_version": {"type": "string"}, "reason": {"type": "string"}}}), true).empty("204", "given back"))]),
        ("/api/v1/agent/jobs/{id}/complete", vec![("post", agent("Agent: the job's conclusion and outputs").body(json!({"type": "object"}), true).ok("200", "stored", json!({"type": "object"})))]),
        ("/api/v1/agent/jobs/{id}/artifacts", vec![("get", agent("Agent: artifact names of the job's run").ok("200", "names", json!({})))]),
        ("/api/v1/agent/jobs/{id}/artifacts/{name}", vec![
            ("get", agent("Agent: an artifact (tar)").ok_as("200", "the tar", "application/octet-stream", json!({"type": "string", "format": "binary"}))),
            ("post", agent("Agent: upload an artifact (tar body)").query("fence", int(), "the lease's fence").raw_body().ok("201", "stored", json!({"type": "object"})))]),
    ]
}

/// The path parameters of a templated path: ids are integers, the rest strings.
fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = if name == "id" {
                int()
            } else {
                json!({"type": "string", "minLength": 1})
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect()
}

pub fn document() -> Value {
    let mut out = Map::new();
    for (path, ops) in paths() {
        let mut item = Map::new();
        let params = path_params(path);
        if !params.is_empty() {
            item.insert("parameters".into(), Value::Array(params));
        }
        for (method, Op(mut o)) in ops {
            let id = format!(
                "{method}{}",
                path.replace(['{', '}'], "").replace(['/', '.', '-'], "_")
            );
            o["operationId"] = json!(id);
            item.insert(method.into(), o);
        }
        out.insert(path.into(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "hangar CI server", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Errors are JSON `{error, code}` with a stable `code`. Lists page with `limit` and an opaque `cursor`: the next page is the `Link: rel=\"next\"` header, `X-Total-Count` counts every match."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas()},
        "security": [{"bearer": []}],
        "paths": out,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_templated_path_declares_its_parameters() {
        let doc = super::document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let n = path.matches('{').count();
            let declared = item["parameters"].as_array().map_or(0, Vec::len);
            assert_eq!(n, declared, "{path}");
        }
    }
}
