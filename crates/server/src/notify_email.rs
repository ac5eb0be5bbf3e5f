//! The `email` notification channel: SMTP with STARTTLS (or implicit TLS) and
//! optional credentials, through lettre over rustls.
//!
//! A rule's `url` names the server, the sender and the recipients:
//! `smtp://[user[:password]@]host[:port]?from=ADDR&to=ADDR[,ADDR...][&tls=starttls|tls|none]`
//! (`smtps://` means `tls=tls`). STARTTLS is required by default, so a server
//! that does not offer it is refused rather than sent the message (and any
//! password) in clear; `tls=none` is accepted only without credentials.
//! Certificates are checked against the web's roots, plus the PEM certificate
//! the administrator names with `hangar serve --smtp-ca-file` (an internal CA).

use std::path::Path;
use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::forge_status::{Outcome, RetryPolicy};

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Security {
    StartTls,
    Implicit,
    None,
}

/// A rule's SMTP target, parsed and checked.
#[derive(Debug, Clone)]
pub struct SmtpTarget {
    host: String,
    port: u16,
    security: Security,
    user: Option<(String, String)>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl SmtpTarget {
    /// What the outbound log shows: no credentials, no recipients.
    pub fn describe(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Parses `smtp://...` / `smtps://...`; the error says what to write instead.
pub fn parse(url: &str) -> Result<SmtpTarget, String> {
    let u = reqwest::Url::parse(url)
        .map_err(|e| format!("`url` is not a URL ({e}): use smtp://host:587?from=...&to=..."))?;
    let implicit = match u.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => {
            return Err(format!(
                "email needs an smtp:// or smtps:// URL, not {other}://"
            ));
        }
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the SMTP URL names no host")?
        .trim_matches(['[', ']'])
        .to_string();
    let (mut from, mut to, mut tls) = (None, Vec::new(), None);
    for (k, v) in u.query_pairs() {
        match k.as_ref() {
            "from" => from = Some(v.into_owned()),
            "to" => to.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(String::from),
            ),
            "tls" => tls = Some(v.into_owned()),
            other => {
                return Err(format!(
                    "unknown SMTP URL parameter `{other}` (from, to, tls)"
                ));
            }
        }
    }
    let security = match (implicit, tls.as_deref()) {
        (true, None | Some("tls")) => Security::Implicit,
        (true, Some(other)) => {
            return Err(format!(
                "smtps:// is implicit TLS; tls={other} contradicts it"
            ));
        }
        (false, None | Some("starttls")) => Security::StartTls,
        (false, Some("tls")) => Security::Implicit,
        (false, Some("none")) => Security::None,
        (false, Some(other)) => {
            return Err(format!("tls={other}: use starttls (default), tls or none"));
        }
    };
    let user = (!u.username().is_empty())
        .then(|| (decode(u.username()), decode(u.password().unwrap_or(""))));
    if security == Security::None && user.is_some() {
        return Err(
            "tls=none with credentials would send the password in clear: use starttls or tls"
                .into(),
        );
    }
    let port = u.port().unwrap_or(match security {
        Security::StartTls => 587,
        Security::Implicit => 465,
        Security::None => 25,
    });
    let mailbox = |a: &str| -> Result<Mailbox, String> {
        a.parse::<Mailbox>()
            .map_err(|e| format!("`{a}` is not an e-mail address: {e}"))
    };
    let from = mailbox(from.as_deref().ok_or("the SMTP URL needs from=ADDRESS")?)?;
    if to.is_empty() {
        return Err("the SMTP URL needs to=ADDRESS[,ADDRESS...]".into());
    }
    if to.len() > 50 {
        return Err("at most 50 recipients per rule".into());
    }
    let to = to
        .iter()
        .map(|a| mailbox(a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SmtpTarget {
        host,
        port,
        security,
        user,
        from,
        to,
    })
}

fn tls_parameters(host: &str, ca: Option<&Path>) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(host.to_string());
    if let Some(path) = ca {
        let pem =
            std::fs::read(path).map_err(|e| format!("--smtp-ca-file {}: {e}", path.display()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            format!(
                "--smtp-ca-file {}: not a PEM certificate: {e}",
                path.display()
            )
        })?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls().map_err(|e| e.to_string())
}

/// Sends one message, retrying transient failures (4xx replies, connection
/// errors) and never permanent ones (5xx replies, TLS that fails or is not offered).
pub async fn send(
    target: &SmtpTarget,
    policy: &RetryPolicy,
    ca: Option<&Path>,
    subject: &str,
    body: &str,
) -> Outcome {
    let mut last = Outcome {
        attempts: 0,
        outcome: "failed",
        http_status: None,
        error: None,
    };
    let message = {
        let mut m = Message::builder()
            .from(target.from.clone())
            .subject(subject.replace(['\r', '\n'], " "))
            .header(ContentType::TEXT_PLAIN);
        for r in &target.to {
            m = m.to(r.clone());
        }
        match m.body(body.to_string()) {
            Ok(m) => m,
            Err(e) => {
                last.outcome = "refused";
                last.error = Some(e.to_string());
                return last;
            }
        }
    };
    let tls = match target.security {
        Security::None => Tls::None,
        s => match tls_parameters(&target.host, ca) {
            Ok(p) if s == Security::StartTls => Tls::Required(p),
            Ok(p) => Tls::Wrapper(p),
            Err(e) => {
                last.outcome = "refused";
                last.error = Some(e);
                return last;
            }
        },
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(target.host.clone())
        .port(target.port)
        .tls(tls)
        .timeout(Some(policy.timeout));
    if let Some((user, pass)) = &target.user {
        builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    let transport = builder.build();
    let mut backoff = policy.first_backoff;
    for attempt in 1..=policy.attempts.max(1) {
        last.attempts = attempt;
        match transport.send(message.clone()).await {
            Ok(_) => {
                last.outcome = "delivered";
                last.error = None;
                return last;
            }
            Err(e) => {
                last.error = Some(e.to_string());
                // A 5xx reply, a certificate that does not verify, or a server
                // without the STARTTLS the rule requires: retrying changes nothing.
                if e.is_permanent() || e.is_tls() || e.is_client() {
                    last.outcome = "refused";
                    return last;
                }
            }
        }
        if attempt < policy.attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2)
                .min(policy.max_backoff)
                .max(Duration::from_millis(1));
        }
    }
    last.outcome = "failed";
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_say_what_is_wrong() {
        let t = parse("smtp://ci%40example.com:p%40ss@mail.example.com?from=ci@example.com&to=a@example.com,%20b@example.com").unwrap();
        assert_eq!(t.port, 587);
        assert_eq!(t.security, Security::StartTls);
        assert_eq!(t.user, Some(("ci@example.com".into(), "p@ss".into())));
        assert_eq!(t.to.len(), 2);
        assert_eq!(t.describe(), "mail.example.com:587");
        assert_eq!(parse("smtps://h?from=a@b.c&to=d@e.f").unwrap().port, 465);
        for (url, want) in [
            ("https://h?from=a@b.c&to=d@e.f", "smtp:// or smtps://"),
            ("smtp://h?to=d@e.f", "from="),
            ("smtp://h?from=a@b.c", "to="),
            ("smtp://h?from=nobody&to=d@e.f", "not an e-mail address"),
            ("smtp://u:p@h?from=a@b.c&to=d@e.f&tls=none", "in clear"),
            ("smtp://h?from=a@b.c&to=d@e.f&tls=maybe", "tls=maybe"),
            (
                "smtp://h?from=a@b.c&to=d@e.f&bcc=x@y.z",
                "unknown SMTP URL parameter",
            ),
        ] {
            let err = parse(url).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
    }
}
