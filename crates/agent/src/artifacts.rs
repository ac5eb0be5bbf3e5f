//! Moving a run's artifacts between the server and the engine's run directory
//! (`<run_dir>/artifacts/<name>/...`), so `actions/download-artifact` in a later
//! job sees what an earlier job uploaded, on whichever agent it ran. An artifact
//! travels as a tar archive of its directory (the `tar` CLI, as the engine's
//! cache does).

use std::path::Path;

use anyhow::{Context, bail};

use crate::client::Client;

/// Fetches every artifact of the job's run; returns their names.
pub async fn download_all(
    client: &Client,
    job_id: i64,
    run_dir: &Path,
) -> anyhow::Result<Vec<String>> {
    let names = client.artifact_names(job_id).await?;
    for name in &names {
        let tar = client.download_artifact(job_id, name).await?;
        let dest = run_dir.join("artifacts").join(name);
        tokio::fs::create_dir_all(&dest).await?;
        let archive = run_dir.join(format!(".{name}.tar"));
        tokio::fs::write(&archive, tar).await?;
        tar_cmd(&dest, &["-xf", &archive.to_string_lossy()]).await?;
        let _ = tokio::fs::remove_file(&archive).await;
    }
    Ok(names)
}

/// Uploads the artifacts the job added.
pub async fn upload_new(
    client: &Client,
    job_id: i64,
    fence: i64,
    run_dir: &Path,
    had: &[String],
) -> anyhow::Result<()> {
    let root = run_dir.join("artifacts");
    let Ok(mut entries) = tokio::fs::read_dir(&root).await else {
        return Ok(());
    };
    while let Some(e) = entries.next_entry().await? {
        let name = e.file_name().to_string_lossy().into_owned();
        if had.contains(&name) || !e.file_type().await?.is_dir() {
            continue;
        }
        let archive = run_dir.join(format!(".{name}.tar"));
        tar_cmd(&e.path(), &["-cf", &archive.to_string_lossy(), "."]).await?;
        let bytes = tokio::fs::read(&archive).await?;
        let _ = tokio::fs::remove_file(&archive).await;
        client
            .upload_artifact(job_id, fence, &name, bytes)
            .await
            .with_context(|| format!("artifact {name}"))?;
    }
    Ok(())
}

async fn tar_cmd(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .context("running tar (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "tar {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
