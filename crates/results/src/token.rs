//! The runtime token (`ACTIONS_RUNTIME_TOKEN`) and signed blob URLs.
//!
//! The token is a JWT because the clients read it: `@actions/artifact` decodes
//! it (without verifying) and takes the run and job ids from the
//! `Actions.Results:RUN:JOB` entry of its `scp` claim, as GitHub's runner
//! issues it. hangar signs it with HMAC-SHA256 under a key that never leaves
//! the process serving the protocol, and refuses any request whose token does
//! not verify or has expired. Hand-written rather than a JWT crate: one fixed
//! algorithm, three base64 segments, and the verification is the HMAC crate's
//! constant-time compare.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What one job may do: which run it belongs to, which cache scopes it reads
/// and the one it writes. GitHub scopes caches by ref: a run reads its own
/// ref's entries, then (for a pull request) its base branch's, then the
/// default branch's; it writes only its own.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    /// Caches never cross repositories.
    pub repository: String,
    /// `workflow_run_backend_id` of the artifact service.
    pub run: String,
    /// `workflow_job_run_backend_id`.
    pub job: String,
    /// The ref entries saved by this job are scoped to (`refs/heads/x`, `refs/pull/1/merge`).
    pub write_scope: String,
    /// Scopes read, in the order they are searched (the write scope first).
    pub read_scopes: Vec<String>,
}

impl Grant {
    /// The grant GitHub gives a job of a run on `git_ref`: its own scope, then
    /// the pull request's base branch, then the default branch.
    pub fn for_ref(
        repository: &str,
        run: &str,
        job: &str,
        git_ref: &str,
        base_ref: Option<&str>,
        default_branch: Option<&str>,
    ) -> Grant {
        let mut read = vec![git_ref.to_string()];
        for b in [base_ref, default_branch].into_iter().flatten() {
            if b.is_empty() {
                continue;
            }
            let r = if b.starts_with("refs/") {
                b.to_string()
            } else {
                format!("refs/heads/{b}")
            };
            if !read.contains(&r) {
                read.push(r);
            }
        }
        Grant {
            repository: repository.to_string(),
            run: backend_id(run),
            job: backend_id(job),
            write_scope: git_ref.to_string(),
            read_scopes: read,
        }
    }
}

/// An id the toolkit can read back out of `Actions.Results:RUN:JOB` (it
/// splits on spaces and colons): kept when it is plain, else a digest of it
/// (a matrix leg's key has spaces and parentheses).
fn backend_id(s: &str) -> String {
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return s.to_string();
    }
    use sha2::Digest as _;
    hex::encode(&Sha256::digest(s.as_bytes())[..16])
}

#[derive(Serialize, Deserialize)]
struct Claims {
    /// Space-separated scopes; `Actions.Results:RUN:JOB` is what the toolkit reads.
    scp: String,
    /// hangar's own claim: the grant in full.
    hgr: Grant,
    iat: i64,
    exp: i64,
}

/// Signs tokens and URLs with one per-service key.
#[derive(Clone)]
pub(crate) struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub(crate) fn random() -> anyhow::Result<Signer> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key)
            .map_err(|e| anyhow::anyhow!("no randomness for the service key: {e}"))?;
        Ok(Signer { key })
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(data);
        m
    }

    pub(crate) fn token(&self, grant: &Grant, now: i64, ttl_secs: i64) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = Claims {
            scp: format!(
                "Actions.GenericRead:00000000-0000-0000-0000-000000000000 Actions.Results:{}:{}",
                grant.run, grant.job
            ),
            hgr: grant.clone(),
            iat: now,
            exp: now + ttl_secs,
        };
        let body = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signing = format!("{header}.{body}");
        let sig = B64.encode(self.mac(signing.as_bytes()).finalize().into_bytes());
        format!("{signing}.{sig}")
    }

    /// The grant of a valid, unexpired token.
    pub(crate) fn verify(&self, token: &str, now: i64) -> Result<Grant, &'static str> {
        let mut parts = token.rsplitn(2, '.');
        let sig = parts.next().ok_or("malformed token")?;
        let signing = parts.next().ok_or("malformed token")?;
        let sig = B64.decode(sig).map_err(|_| "malformed token")?;
        self.mac(signing.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| "the token's signature does not verify")?;
        let body = signing.split('.').nth(1).ok_or("malformed token")?;
        let claims: Claims =
            serde_json::from_slice(&B64.decode(body).map_err(|_| "malformed token")?)
                .map_err(|_| "malformed token")?;
        if claims.exp < now {
            return Err("the token has expired");
        }
        Ok(claims.hgr)
    }

    /// Signature of a blob URL: what it allows (`what`, e.g. `put:ID`) until `exp`.
    pub(crate) fn url_sig(&self, what: &str, exp: i64) -> String {
        hex::encode(
            self.mac(format!("{what}\n{exp}").as_bytes())
                .finalize()
                .into_bytes(),
        )
    }

    pub(crate) fn check_url_sig(&self, what: &str, exp: i64, sig: &str, now: i64) -> bool {
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        exp >= now
            && self
                .mac(format!("{what}\n{exp}").as_bytes())
                .verify_slice(&sig)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant::for_ref(
            "o/r",
            "run1",
            "job1",
            "refs/pull/3/merge",
            Some("dev"),
            Some("main"),
        )
    }

    #[test]
    fn a_token_round_trips_and_names_the_run_for_the_toolkit() {
        let s = Signer::random().unwrap();
        let t = s.token(&grant(), 100, 60);
        assert_eq!(s.verify(&t, 120).unwrap(), grant());
        // What @actions/artifact reads: the scp claim, unverified.
        let body = t.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&B64.decode(body).unwrap()).unwrap();
        assert!(
            claims["scp"]
                .as_str()
                .unwrap()
                .split(' ')
                .any(|s| s == "Actions.Results:run1:job1")
        );
        let leg = Grant::for_ref("o/r", "1", "test (ubuntu, 18)", "refs/heads/x", None, None);
        assert_eq!(leg.job.len(), 32);
        assert!(leg.job.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            grant().read_scopes,
            ["refs/pull/3/merge", "refs/heads/dev", "refs/heads/main"]
        );
    }

    #[test]
    fn forged_expired_and_foreign_tokens_are_refused() {
        let s = Signer::random().unwrap();
        let t = s.token(&grant(), 100, 60);
        assert_eq!(s.verify(&t, 161), Err("the token has expired"));
        let other = Signer::random().unwrap();
        assert!(other.verify(&t, 120).is_err());
        // A claim edited after signing.
        let mut parts: Vec<&str> = t.split('.').collect();
        let mut g = grant();
        g.read_scopes.push("refs/heads/secret".into());
        let forged = B64.encode(
            serde_json::to_vec(&Claims {
                scp: String::new(),
                hgr: g,
                iat: 100,
                exp: 200,
            })
            .unwrap(),
        );
        parts[1] = &forged;
        assert!(s.verify(&parts.join("."), 120).is_err());
        assert!(s.verify("", 0).is_err());
        assert!(s.verify("a.b", 0).is_err());
    }

    #[test]
    fn url_signatures_bind_what_and_when() {
        let s = Signer::random().unwrap();
        let sig = s.url_sig("get:cache:1", 50);
        assert!(s.check_url_sig("get:cache:1", 50, &sig, 40));
        assert!(!s.check_url_sig("get:cache:2", 50, &sig, 40));
        assert!(!s.check_url_sig("get:cache:1", 51, &sig, 40));
        assert!(!s.check_url_sig("get:cache:1", 50, &sig, 51));
        assert!(!s.check_url_sig("get:cache:1", 50, "zz", 40));
    }
}
