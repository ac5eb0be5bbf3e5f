//! Notifications: rules (`POST /api/v1/notifications`, and a repository's
//! `notifications:` in hangar.yml at its default branch) say which events go to
//! which channel — a Slack-compatible incoming webhook, a Microsoft Teams
//! workflow webhook, a generic JSON webhook signed like GitHub's
//! (`X-Hangar-Signature-256: sha256=<HMAC-SHA256 of the body>`), or e-mail
//! over SMTP (`notify_email`: STARTTLS required unless the rule says otherwise).
//!
//! Messages are built from run and job names only, and then masked with the
//! repository's secrets all the same (a workflow or branch name may carry one).
//! Delivery shares the commit statuses' retry rules (`forge_status::send_with_retries`)
//! and its outcome goes to the outbound log with kind `notification`.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use hangar_store::{NewOutbound, NotificationRule, Store};

use crate::forge_status::{RetryPolicy, send_with_retries};
use crate::mask::Masker;

/// The events a rule can name.
pub const EVENTS: &[&str] = hangar_project::NOTIFICATION_EVENTS;

/// The channels a rule can deliver to (hangar.yml's rules name the same).
pub const CHANNELS: &[&str] = hangar_project::NOTIFICATION_CHANNELS;

/// One thing that happened, in words and as data.
#[derive(Debug, Clone)]
pub struct Notice {
    pub event: &'static str,
    pub repo_id: Option<i64>,
    pub run_id: Option<i64>,
    pub title: String,
    pub text: String,
    /// Machine-readable details for the generic webhook.
    pub data: Value,
}

/// Checks a rule before it is stored.
pub fn validate(rule: &NotificationRule) -> Result<(), String> {
    if rule.events.is_empty() {
        return Err(format!(
            "`events` is empty: name one or more of {}",
            EVENTS.join(", ")
        ));
    }
    for e in &rule.events {
        if !EVENTS.contains(&e.as_str()) {
            return Err(format!("unknown event `{e}`: use {}", EVENTS.join(", ")));
        }
    }
    if !CHANNELS.contains(&rule.channel.as_str()) {
        return Err(format!(
            "unknown channel `{}`: use {}",
            rule.channel,
            CHANNELS.join(", ")
        ));
    }
    let url = rule.target.as_str();
    if rule.channel == "email" {
        return crate::notify_email::parse(url).map(|_| ());
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(' ') {
        return Err("`url` must be an http(s) URL (the channel's incoming webhook)".into());
    }
    Ok(())
}

/// The host of a webhook URL: what the API and the log show of it (the rest of
/// a Slack or Teams URL is the credential).
pub fn host_of(url: &str) -> String {
    if let Ok(t) = crate::notify_email::parse(url) {
        return t.describe();
    }
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    host.rsplit('@').next().unwrap_or(host).to_string()
}

/// The body a channel expects.
pub fn body_for(channel: &str, n: &Notice, link: Option<&str>) -> Value {
    let line = match link {
        Some(l) => format!("{}\n{}\n{l}", n.title, n.text),
        None => format!("{}\n{}", n.title, n.text),
    };
    match channel {
        "slack" => json!({"text": line}),
        // A Teams workflow ("When a Teams webhook request is received") takes an
        // Adaptive Card in a message envelope.
        "teams" => json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": n.title, "weight": "Bolder", "wrap": true},
                        {"type": "TextBlock", "text": n.text, "wrap": true}
                    ],
                    "actions": link.map(|l| json!([{"type": "Action.OpenUrl", "title": "Open", "url": l}])).unwrap_or(json!([]))
                }
            }]
        }),
        _ => json!({
            "event": n.event,
            "title": n.title,
            "text": n.text,
            "url": link,
            "repo_id": n.repo_id,
            "run_id": n.run_id,
            "data": n.data,
        }),
    }
}

/// The outbound log's line for one notification, whatever its channel.
fn record(
    store: &Arc<dyn Store>,
    rule: &NotificationRule,
    n: &Notice,
    out: &crate::forge_status::Outcome,
) {
    if out.outcome != "delivered" {
        tracing::warn!(
            rule = rule.id,
            "notification not delivered after {} attempt(s): {}",
            out.attempts,
            out.error.as_deref().unwrap_or(out.outcome)
        );
    }
    let _ = store.record_outbound(&NewOutbound {
        kind: "notification".into(),
        repo_id: n.repo_id,
        run_id: n.run_id,
        target: format!("{} {}", rule.channel, host_of(&rule.target)),
        subject: if rule.id < 0 {
            format!("hangar.yml notifications[{}]", -rule.id - 1)
        } else {
            format!("rule {}", rule.id)
        },
        state: n.event.into(),
        attempts: out.attempts as i64,
        outcome: out.outcome.into(),
        http_status: out.http_status.map(i64::from),
        error: out.error.clone(),
    });
}

/// The `X-Hangar-Signature-256` of a signed webhook (GitHub's scheme): one
/// function for the server's channels and the environments' alert webhooks.
pub use hangar_deploy::alerts::signature;

pub struct Notifier {
    client: reqwest::Client,
    pub policy: RetryPolicy,
    pub base_url: Mutex<String>,
    /// (job, attempt, event) already notified: a job's state is published more
    /// than once, its deployment is announced once.
    seen: Mutex<std::collections::HashSet<(i64, i64, &'static str)>>,
    smtp_ca: Option<std::path::PathBuf>,
    /// Each repository's rules from its hangar.yml, as last read.
    from_files: Mutex<std::collections::HashMap<i64, Vec<hangar_project::Notification>>>,
}

impl Notifier {
    pub fn new(policy: RetryPolicy) -> Notifier {
        Notifier {
            client: reqwest::Client::new(),
            policy,
            base_url: Mutex::new(String::new()),
            seen: Default::default(),
            smtp_ca: None,
            from_files: Default::default(),
        }
    }

    /// Replaces a repository's rules from its hangar.yml.
    pub fn set_file_rules(&self, repo_id: i64, rules: Vec<hangar_project::Notification>) {
        let mut m = self.from_files.lock().unwrap_or_else(|e| e.into_inner());
        if rules.is_empty() {
            m.remove(&repo_id);
        } else {
            m.insert(repo_id, rules);
        }
    }

    /// The hangar.yml rules of `repo_id` that want `event`, with the secrets
    /// they name resolved (the repository's, over the server's). A rule whose
    /// secret is not set is reported in the outbound log and skipped. Their
    /// ids are negative: `-1` is the file's first rule.
    fn file_rules(
        &self,
        store: &Arc<dyn Store>,
        repo_id: i64,
        n: &Notice,
    ) -> Vec<NotificationRule> {
        let rules: Vec<(usize, hangar_project::Notification)> = {
            let m = self.from_files.lock().unwrap_or_else(|e| e.into_inner());
            let Some(rules) = m.get(&repo_id) else {
                return vec![];
            };
            rules
                .iter()
                .cloned()
                .enumerate()
                .filter(|(_, r)| r.events.iter().any(|e| e.value == n.event))
                .collect()
        };
        if rules.is_empty() {
            return vec![];
        }
        let secrets = store.secrets_for_repo(repo_id).unwrap_or_default();
        let mut out = Vec::new();
        for (i, r) in rules {
            let rule = NotificationRule {
                id: -(i as i64) - 1,
                repo_id: Some(repo_id),
                events: r.events.iter().map(|e| e.value.clone()).collect(),
                channel: r.channel.value.clone(),
                target: secrets
                    .get(&r.url_secret.value)
                    .cloned()
                    .unwrap_or_default(),
                secret: r
                    .signing_secret
                    .as_ref()
                    .and_then(|s| secrets.get(&s.value).cloned()),
                created_at: 0,
            };
            let missing = if rule.target.is_empty() {
                Some(&r.url_secret.value)
            } else if r.signing_secret.is_some() && rule.secret.is_none() {
                r.signing_secret.as_ref().map(|s| &s.value)
            } else {
                None
            };
            // Neither the secret's value nor validation's words about it (which
            // quote parts of it) may reach the log: only the secret's name.
            let problem = match missing {
                Some(name) => Some(format!(
                    "hangar.yml names the secret `{name}`, which is not set for the repository or the server"
                )),
                None => validate(&rule).err().map(|_| {
                    format!(
                        "the secret `{}` that hangar.yml names does not hold a usable {} URL (an http(s) webhook URL; smtp://host:587?from=...&to=... for email)",
                        r.url_secret.value, rule.channel
                    )
                }),
            };
            if let Some(problem) = problem {
                let out = crate::forge_status::Outcome {
                    attempts: 0,
                    outcome: "refused",
                    http_status: None,
                    error: Some(problem),
                };
                let redacted = NotificationRule {
                    target: String::new(),
                    secret: None,
                    ..rule
                };
                record(store, &redacted, n, &out);
                continue;
            }
            out.push(rule);
        }
        out
    }

    /// Trusts `ca` (a PEM certificate) for SMTP servers, besides the web's roots.
    pub fn with_smtp_ca(mut self, ca: Option<std::path::PathBuf>) -> Notifier {
        self.smtp_ca = ca;
        self
    }

    /// `true` the first time it is asked about (job, attempt, event).
    pub fn first_time(&self, job: i64, attempt: i64, event: &'static str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            // Bounded memory; a repeat after this is one more message, not a leak.
            seen.clear();
        }
        seen.insert((job, attempt, event))
    }

    /// Sends `n` through every rule that wants it. Returns at once.
    pub fn notify(&self, store: &Arc<dyn Store>, n: Notice) {
        let rules = match store.notification_rules() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("reading notification rules: {e:#}");
                return;
            }
        };
        let mut rules: Vec<NotificationRule> = rules
            .into_iter()
            .filter(|r| r.repo_id.is_none() || r.repo_id == n.repo_id)
            .filter(|r| r.events.iter().any(|e| e == n.event))
            .collect();
        if let Some(repo) = n.repo_id {
            rules.extend(self.file_rules(store, repo, &n));
        }
        if rules.is_empty() {
            return;
        }
        let masker = {
            let mut secrets: Vec<String> = match n.repo_id {
                Some(id) => store
                    .secrets_for_repo(id)
                    .unwrap_or_default()
                    .into_values()
                    .collect(),
                None => Vec::new(),
            };
            for r in &rules {
                secrets.extend(r.secret.clone());
            }
            Masker::new(secrets.iter())
        };
        let n = Notice {
            title: masker.mask(&n.title),
            text: masker.mask(&n.text),
            data: serde_json::from_str(&masker.mask(&n.data.to_string())).unwrap_or(Value::Null),
            ..n
        };
        let base = self
            .base_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let link = n.run_id.map(|id| format!("{base}/ui/#/runs/{id}"));
        for rule in rules {
            if rule.channel == "email" {
                self.email(store, &rule, &n, link.as_deref());
                continue;
            }
            let body = body_for(&rule.channel, &n, link.as_deref());
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let mut headers = vec![("x-hangar-event", n.event.to_string())];
            if let Some(secret) = &rule.secret {
                headers.push(("x-hangar-signature-256", signature(secret, &bytes)));
            }
            let client = self.client.clone();
            let policy = self.policy.clone();
            let store = store.clone();
            let n = n.clone();
            tokio::spawn(async move {
                let out = send_with_retries(&client, &policy, &rule.target, &headers, &bytes).await;
                record(&store, &rule, &n, &out);
            });
        }
    }

    /// Sends `n` by e-mail through `rule`'s SMTP server, in the background.
    fn email(
        &self,
        store: &Arc<dyn Store>,
        rule: &NotificationRule,
        n: &Notice,
        link: Option<&str>,
    ) {
        let target = match crate::notify_email::parse(&rule.target) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(rule = rule.id, "e-mail rule unusable: {e}");
                return;
            }
        };
        let body = match link {
            Some(l) => format!("{}\n\n{l}\n", n.text),
            None => format!("{}\n", n.text),
        };
        let (policy, store, rule, n) =
            (self.policy.clone(), store.clone(), rule.clone(), n.clone());
        let ca = self.smtp_ca.clone();
        tokio::spawn(async move {
            let out =
                crate::notify_email::send(&target, &policy, ca.as_deref(), &n.title, &body).await;
            record(&store, &rule, &n, &out);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_shows_only_the_host_of_a_webhook_url() {
        assert_eq!(
            host_of("https://hooks.slack.com/services/T000/B000/XXXX"),
            "hooks.slack.com"
        );
        assert_eq!(host_of("http://u:p@127.0.0.1:9/x?y"), "127.0.0.1:9");
    }
}
