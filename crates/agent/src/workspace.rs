//! The job's workspace: the commit fetched from the run's clone URL with the `git`
//! CLI (local paths and file URLs work as well as forges).

use std::path::Path;

use anyhow::{Context, bail};

use crate::reporter::Reporter;

pub async fn prepare(
    ws: &Path,
    clone_url: &str,
    sha: &str,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(ws)
        .await
        .with_context(|| format!("creating {}", ws.display()))?;
    if clone_url.is_empty() || sha.is_empty() {
        return Ok(());
    }
    git(ws, &["init", "-q"]).await?;
    // Fetch exactly the commit (protocol v2 serves any reachable object); a shallow
    // fetch keeps big histories cheap.
    if let Err(e) = git(
        ws,
        &["fetch", "-q", "--no-tags", "--depth=1", clone_url, sha],
    )
    .await
    {
        reporter.line(&format!(
            "fetching {sha} by id failed ({e:#}); fetching all refs"
        ));
        git(
            ws,
            &[
                "fetch",
                "-q",
                "--no-tags",
                clone_url,
                "+refs/*:refs/remotes/origin/*",
            ],
        )
        .await?;
    }
    git(ws, &["checkout", "-q", "--detach", sha]).await?;
    Ok(())
}

async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true)
        .output()
        .await
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
