//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, written by hand: the
//! API is small, and a derive framework would cost more build time than it saves.

use serde_json::{Value, json};

fn op(summary: &str, tag: &str) -> Value {
    json!({"summary": summary, "tags": [tag], "responses": {"200": {"description": "OK"}, "401": {"description": "missing or unknown token"}}})
}

/// Forge statuses, notifications and the outbound log (a second `json!` call:
/// one literal of every path exceeds the macro's recursion limit).
fn outbound_paths() -> Value {
    json!({
            "/api/v1/notifications": {
                "get": op("Notification rules (URLs shown by host only)", "notifications"),
                "post": {"summary": "Add a rule {repo_id?, events, channel: slack|teams|webhook, url, secret?}", "tags": ["notifications"],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["events", "channel", "url"], "properties": {
                        "repo_id": {"type": "integer"},
                        "events": {"type": "array", "items": {"type": "string", "enum": ["run_failed", "run_fixed", "approval_waiting", "deployment_started", "deployment_succeeded", "deployment_failed", "agent_lost"]}},
                        "channel": {"type": "string", "enum": ["slack", "teams", "webhook"]},
                        "url": {"type": "string"}, "secret": {"type": "string"}}}}}},
                    "responses": {"201": {"description": "created"}, "401": {"description": "missing or unknown token"}, "404": {"description": "no such repository"}, "422": {"description": "invalid rule, named"}}}},
            "/api/v1/notifications/{id}": {"delete": {"summary": "Remove a rule", "tags": ["notifications"], "responses": {"204": {"description": "removed"}, "404": {"description": "no such rule"}}}},
            "/api/v1/repos/{id}/forge": {
                "get": op("Where the repository's commit statuses go {kind, api_url, project, has_token}; 404 when nowhere", "repos"),
                "put": {"summary": "Report commit statuses to the forge {token, kind?, api_url?, project?}; the token is sealed and write-only", "tags": ["repos"],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["token"], "properties": {
                        "token": {"type": "string"}, "kind": {"type": "string", "enum": ["github", "gitea", "forgejo", "gitlab"]},
                        "api_url": {"type": "string"}, "project": {"type": "string"}}}}}},
                    "responses": {"200": {"description": "stored"}, "401": {"description": "missing or unknown token"}, "404": {"description": "no such repository"}, "422": {"description": "invalid setting, named"}}},
                "delete": {"summary": "Stop reporting commit statuses", "tags": ["repos"], "responses": {"204": {"description": "removed"}, "404": {"description": "none set"}}}},
            "/api/v1/outbound": {"get": {"summary": "What the server sent out (commit statuses, notifications), newest first, with attempts and outcome", "tags": ["ops"], "parameters": [
                {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["status", "notification"]}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}], "responses": {"200": {"description": "OK"}, "401": {"description": "missing or unknown token"}}}}
    })
}

/// Access: token revocation, the live stream's token, "approve and run",
/// environment secrets and variables.
fn access_paths() -> Value {
    let name_rule = "1 to 100 of A-Z a-z 0-9 . _ - (no `..`); 400 otherwise";
    json!({
        "/api/v1/tokens/{id}": {"delete": {"summary": "Revoke a token: it answers 401 from now on", "tags": ["ops"],
            "responses": {"204": {"description": "revoked"}, "404": {"description": "no such token, or already revoked"}}}},
        "/api/v1/runs/{id}/events/token": {"post": {"summary": "A stream token for this run's live stream (`?access_token=` of GET /api/v1/runs/{id}/events only), valid 60 s", "tags": ["runs"],
            "responses": {"200": {"description": "{token, expires_in}"}, "404": {"description": "no such run"}}}},
        "/api/v1/runs/{id}/approve": {"post": {"summary": "Approve and run: start a run held for approval (an untrusted pull request); admin or write token", "tags": ["runs"],
            "responses": {"202": {"description": "started"}, "404": {"description": "no such run"}, "409": {"description": "not held, or completed"}}}},
        "/api/v1/repos/{id}/settings": {
            "get": op("The repository's settings {approval_policy}", "repos"),
            "put": {"summary": "Set {approval_policy: none|first-time|untrusted}: which untrusted pull requests wait for an approval before they run", "tags": ["repos"],
                "responses": {"200": {"description": "stored"}, "404": {"description": "no such repository"}, "422": {"description": "unknown policy"}}}},
        "/api/v1/repos/{id}/environments/{env}/secrets": {"get": op("Names of an environment's secrets (environment names compared without case)", "secrets")},
        "/api/v1/repos/{id}/environments/{env}/secrets/{name}": {
            "put": {"summary": format!("Set an environment's secret {{value}}, released only to a job of that environment once it passed its protection; names: {name_rule}"), "tags": ["secrets"],
                "responses": {"204": {"description": "stored"}, "400": {"description": "invalid name"}, "404": {"description": "no such repository"}}},
            "delete": {"summary": "Remove an environment's secret", "tags": ["secrets"], "responses": {"204": {"description": "removed"}, "404": {"description": "no such secret"}}}},
        "/api/v1/repos/{id}/environments/{env}/variables/{name}": {"put": {"summary": format!("Set an environment's variable {{value}}; names: {name_rule}"), "tags": ["secrets"],
            "responses": {"204": {"description": "stored"}, "400": {"description": "invalid name"}, "404": {"description": "no such repository"}}}},
    })
}

pub fn document() -> Value {
    let mut doc = document_base();
    for more in [outbound_paths(), access_paths()] {
        if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), more) {
            paths.extend(more);
        }
    }
    doc
}

fn document_base() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "hangar CI server", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness (no token)", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": op("Prometheus metrics", "ops")},
            "/hooks/{forge}": {"post": {"summary": "Forge webhook (github, gitea, forgejo, gitlab); authenticated by signature", "security": [],
                "parameters": [{"name": "forge", "in": "path", "required": true, "schema": {"type": "string"}}, {"name": "repo", "in": "query", "schema": {"type": "string"}}],
                "responses": {"202": {"description": "runs queued"}, "200": {"description": "duplicate delivery"}, "400": {"description": "malformed payload"}, "401": {"description": "bad signature"}}}},
            "/api/v1/repos": {"get": op("List repositories", "repos"), "post": op("Register a repository {name, clone_url, forge, webhook_secret}", "repos")},
            "/api/v1/repos/{id}/dispatch": {"post": op("workflow_dispatch {workflow, ref, inputs}", "runs")},
            "/api/v1/repos/{id}/workflows": {"get": op("Workflows at a ref with their workflow_dispatch inputs", "runs")},
            "/api/v1/repos/{id}/secrets": {"get": op("Secret names (never values); id 0 = global", "secrets")},
            "/api/v1/repos/{id}/secrets/{name}": {"put": op("Set a secret {value}", "secrets")},
            "/api/v1/repos/{id}/variables/{name}": {"put": op("Set a variable {value}", "secrets")},
            "/api/v1/runs": {"get": {"summary": "List runs", "tags": ["runs"], "parameters": [
                {"name": "repo", "in": "query", "schema": {"type": "integer"}},
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["waiting", "queued", "running", "completed"]}},
                {"name": "event", "in": "query", "schema": {"type": "string"}},
                {"name": "branch", "in": "query", "schema": {"type": "string"}},
                {"name": "workflow", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "OK"}}}},
            "/api/v1/runs/{id}": {"get": op("A run with its jobs, steps, approvals and why each job waits", "runs")},
            "/api/v1/runs/{id}/cancel": {"post": op("Cancel a run (reaches running processes)", "runs")},
            "/api/v1/runs/{id}/rerun": {"post": op("Re-run {jobs: all | failed | <job id>}", "runs")},
            "/api/v1/runs/{id}/events": {"get": op("Server-sent events: job, step, log and run changes", "runs")},
            "/api/v1/runs/{id}/artifacts": {"get": op("Artifacts of a run", "artifacts")},
            "/api/v1/runs/{id}/artifacts/{name}": {"get": op("Download an artifact", "artifacts"), "post": op("Upload an artifact (body = bytes)", "artifacts")},
            "/api/v1/jobs/{id}/logs": {"get": op("Log lines [from, to) as JSON; ?attempt=N for an earlier attempt of the job", "logs")},
            "/api/v1/jobs/{id}/logs/raw": {"get": op("The whole log as text; ?attempt=N for an earlier attempt of the job", "logs")},
            "/api/v1/approvals": {"get": op("Approvals (pending=true by default)", "approvals")},
            "/api/v1/approvals/{id}": {"post": op("Approve or reject {approve, comment}", "approvals")},
            "/api/v1/agents": {"get": op("Agents", "agents")},
            "/api/v1/deliveries": {"get": op("Webhook deliveries", "ops")},
            "/api/v1/audit": {"get": op("Audit log", "ops")},
            "/api/v1/deployments": {"get": op("Deployments", "ops")},
            "/api/v1/tokens": {"get": op("Tokens (never values)", "ops"), "post": op("Create a token {name, role: admin|write|read|agent, expires_in?: seconds, repos?: [names], labels?: [labels] (agent tokens only)}", "ops")},
            "/api/v1/agent/poll": {"post": op("Agent: long-poll for a job", "agent")},
            "/api/v1/agent/jobs/{id}/heartbeat": {"post": op("Agent: extend the lease {fence}", "agent")},
            "/api/v1/agent/jobs/{id}/logs": {"post": op("Agent: one log chunk {fence, chunk, first_line, text}", "agent")},
            "/api/v1/agent/jobs/{id}/steps": {"post": op("Agent: a step started or finished", "agent")},
            "/api/v1/agent/jobs/{id}/complete": {"post": op("Agent: the job's conclusion and outputs", "agent")},
            "/api/v1/agent/jobs/{id}/artifacts": {"get": op("Agent: artifact names of the job's run", "agent")},
            "/api/v1/agent/jobs/{id}/artifacts/{name}": {"get": op("Agent: an artifact (tar)", "agent"), "post": op("Agent: upload an artifact (tar body, ?fence=)", "agent")}
        }
    })
}
