//! Tags on merge: a push to a repository's default branch that merges a
//! release prepared with `hangar release --pr` is tagged by the server, as
//! `hangar release` would tag it on that branch — when the repository's
//! hangar.yml at the pushed commit opts in with `release.tag_on_merge: true`.
//!
//! The merged release is found as `hangar release` finds it
//! (`hangar_release::pr::merged_release_at`: the `chore(release): vX.Y.Z`
//! commit in the pushed history that no tag contains, and the commit that
//! merged it), its annotated tags get the changelog section as committed, and
//! they are pushed to the registered clone URL (a local one is tagged in
//! place) with the forge credential's token for an https URL. Once only: the
//! tags are read from the clone URL before deciding, so a redelivered webhook,
//! the repository watcher and a later push all find the release tagged, and
//! one tagging at a time runs in the process. Each tag made is audited
//! (`release.tag`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use hangar_git::Git;
use hangar_store::{ForgeCredential, Repo};

use crate::app::App;
use crate::workflows::Event;

/// One tagging at a time: two deliveries of one push cannot both tag.
static TAGGING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Who the server's tags name as their tagger.
const TAGGER: (&str, &str) = ("hangar", "hangar@localhost");

/// Whether `event` is a push to the repository's default branch: the one the
/// payload names (GitHub and Gitea's `repository.default_branch`, GitLab's
/// `project.default_branch`), else `main` or `master`.
fn to_default_branch(event: &Event) -> bool {
    if event.name != "push" || event.deleted {
        return false;
    }
    let named = ["/repository/default_branch", "/project/default_branch"]
        .iter()
        .find_map(|p| event.payload.pointer(p).and_then(|v| v.as_str()));
    match named {
        Some(b) => event.git_ref.strip_prefix("refs/heads/") == Some(b),
        None => crate::app::default_branch_refs().contains(&event.git_ref.as_str()),
    }
}

/// After a push is queued: tags the release it merged, in the background
/// (the forge's webhook is answered first).
pub(crate) fn after_push(app: &Arc<App>, repo: &Repo, event: &Event, delivery: &str) {
    if !to_default_branch(event) || !hangar_git::is_commit_id(&event.sha) {
        return;
    }
    let (app, repo, sha, delivery) = (
        app.clone(),
        repo.clone(),
        event.sha.clone(),
        delivery.to_string(),
    );
    tokio::spawn(async move {
        match tag_merged(&app, &repo, &sha, &delivery).await {
            Ok(tags) if !tags.is_empty() => {
                tracing::info!(repo = %repo.name, "tagged {} on the merge of its release", tags.join(", "));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(repo = %repo.name, "tagging the release merged in {sha}: {e:#}")
            }
        }
    });
}

/// Tags the untagged release merged in `sha`'s history, if hangar.yml opts
/// in; returns the tags made.
pub(crate) async fn tag_merged(
    app: &App,
    repo: &Repo,
    sha: &str,
    delivery: &str,
) -> anyhow::Result<Vec<String>> {
    let _one = TAGGING.lock().await;
    let mut text = None;
    for name in ["hangar.yml", "hangar.yaml"] {
        text = app.git.file_at(&repo.clone_url, sha, name).await?;
        if text.is_some() {
            break;
        }
    }
    let Some(text) = text else {
        return Ok(vec![]);
    };
    // An invalid release section tags nothing: `hangar release` would refuse it too.
    let config = hangar_release::Config::parse("hangar.yml", &text)
        .with_context(|| format!("hangar.yml at {sha}: no release is tagged until it is fixed"))?;
    if !config.tag_on_merge {
        return Ok(vec![]);
    }
    let local = crate::git::local_path(&repo.clone_url).is_some();
    let dir = app.git.repo_with_tags(&repo.clone_url, sha).await?;
    let (dir2, sha2) = (dir.clone(), sha.to_string());
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let Some(merged) = hangar_release::pr::merged_release_at(&dir2, &sha2)? else {
            return Ok(None);
        };
        let tags = hangar_release::pr::merged_tags(&dir2, &config, &merged)?;
        Ok(Some((merged, tags)))
    })
    .await??;
    let Some((merged, tags)) = found else {
        return Ok(vec![]);
    };
    let mut made = Vec::new();
    for t in &tags {
        hangar_release::pr::annotated_tag(&dir, &t.tag, &merged.commit, &t.message)
            .env("GIT_COMMITTER_NAME", TAGGER.0)
            .env("GIT_COMMITTER_EMAIL", TAGGER.1)
            .output_async()
            .await
            .with_context(|| format!("tagging {} on {}", t.tag, merged.commit))?;
        made.push(t.tag.clone());
    }
    if !local {
        let cred = app.store.forge_credential(repo.id).ok().flatten();
        if let Err(e) = push_tags(&dir, &repo.clone_url, cred.as_ref(), &made).await {
            // Not left in the mirror: the next push must find the release untagged.
            let _ = Git::new(&dir)
                .args(&["tag", "-d"])
                .values(&made)
                .output_async()
                .await;
            return Err(e);
        }
    }
    for t in &tags {
        app.store.audit(
            "hangar",
            "release.tag",
            &format!("repo/{}", repo.id),
            &serde_json::json!({
                "tag": t.tag,
                "version": t.version,
                "commit": merged.commit,
                "release_commit": merged.release_commit,
                "delivery": delivery,
            }),
        )?;
    }
    Ok(made)
}

/// Pushes `tags` from the mirror `dir` to the clone URL; over https with the
/// forge's token as the password git's HTTP transport sends (in the
/// environment, never on the command line).
async fn push_tags(
    dir: &Path,
    clone_url: &str,
    cred: Option<&ForgeCredential>,
    tags: &[String],
) -> anyhow::Result<()> {
    let mut git = Git::new(dir).env("GIT_ALLOW_PROTOCOL", "https:ssh:file");
    if let Some(header) = cred.and_then(|c| auth_header(clone_url, c)) {
        git = git
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", header);
    }
    git.args(&["push", "-q"])
        .value(clone_url)
        .values(tags.iter().map(|t| format!("refs/tags/{t}:refs/tags/{t}")))
        .run_async()
        .await
        .with_context(|| format!("pushing {} to the repository", tags.join(", ")))
}

/// The `Authorization` header git sends to an https forge: Basic, with the
/// user name each forge documents for a token (`x-access-token` on GitHub,
/// `oauth2` on GitLab and Gitea). None for another transport, or for a
/// GitHub App credential (its installation token is not kept for git).
fn auth_header(clone_url: &str, cred: &ForgeCredential) -> Option<String> {
    if !clone_url.starts_with("https://")
        || crate::github_checks::ChecksCredential::decode(&cred.token).is_some()
    {
        return None;
    }
    let user = match crate::forge_status::Forge::parse(&cred.kind)? {
        crate::forge_status::Forge::GitHub => "x-access-token",
        _ => "oauth2",
    };
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", cred.token));
    Some(format!("Authorization: Basic {basic}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pushes_to_the_default_branch_are_looked_at() {
        let ev = |git_ref: &str, payload: serde_json::Value| Event {
            name: "push".into(),
            git_ref: git_ref.into(),
            payload,
            ..Default::default()
        };
        assert!(to_default_branch(&ev(
            "refs/heads/main",
            serde_json::json!({})
        )));
        assert!(!to_default_branch(&ev(
            "refs/heads/release/v1.0.0",
            serde_json::json!({})
        )));
        let trunk = serde_json::json!({"repository": {"default_branch": "trunk"}});
        assert!(to_default_branch(&ev("refs/heads/trunk", trunk.clone())));
        assert!(!to_default_branch(&ev("refs/heads/main", trunk)));
        assert!(!to_default_branch(&ev(
            "refs/tags/v1.0.0",
            serde_json::json!({})
        )));
    }

    #[test]
    fn the_token_goes_in_a_header_for_https_only() {
        let cred = |kind: &str| ForgeCredential {
            kind: kind.into(),
            api_url: "https://api.github.com".into(),
            project: "acme/app".into(),
            token: "t0ken".into(),
        };
        let h = auth_header("https://github.com/acme/app.git", &cred("github")).unwrap();
        let b = base64::engine::general_purpose::STANDARD
            .decode(h.strip_prefix("Authorization: Basic ").unwrap())
            .unwrap();
        assert_eq!(b, b"x-access-token:t0ken");
        let h = auth_header("https://gitlab.com/acme/app.git", &cred("gitlab")).unwrap();
        assert!(h.starts_with("Authorization: Basic "));
        assert_eq!(
            auth_header("git@github.com:acme/app.git", &cred("github")),
            None
        );
    }
}
