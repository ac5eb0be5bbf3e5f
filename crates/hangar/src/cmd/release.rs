//! `hangar release` and `hangar commitlint`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use hangar_release::{Options, commitlint, lint};

#[derive(Subcommand)]
pub enum Command {
    /// Cut a release from conventional commits: version, changelog, version files, commit, tag.
    Release {
        /// Show the next version and notes; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Pre-release channel, e.g. `rc` -> 1.4.0-rc.1, rc.2, ...
        #[arg(long)]
        pre: Option<String>,
        /// Release exactly this version.
        #[arg(long = "as", value_name = "X.Y.Z")]
        force: Option<semver_arg::V>,
        /// Print only the release notes of the new version.
        #[arg(long)]
        notes: bool,
        /// Only this package (monorepo).
        #[arg(long)]
        package: Option<String>,
        #[arg(long)]
        no_commit: bool,
        #[arg(long)]
        no_tag: bool,
        /// Prepare the release for review instead: commit the version files and
        /// changelog on a branch `release/vX.Y.Z` and push it; once it is
        /// merged, `hangar release` tags the merge with that version.
        #[arg(long, conflicts_with_all = ["no_commit", "no_tag", "notes"])]
        pr: bool,
        /// The git remote `--pr` pushes the branch to.
        #[arg(long, default_value = "origin", requires = "pr", value_name = "NAME")]
        remote: String,
        /// With `--pr`: keep the branch local.
        #[arg(long, requires = "pr")]
        no_push: bool,
        /// With `--pr`: the forge to open the pull request on (github, gitea,
        /// forgejo, gitlab) [default: from the remote's host, github.com or
        /// gitlab.com]. The pull request is opened only with a token in
        /// HANGAR_FORGE_TOKEN or GITHUB_TOKEN; without one the compare link is printed.
        #[arg(long, env = "HANGAR_FORGE", value_name = "KIND")]
        forge: Option<String>,
        /// With `--pr`: the forge's API root, e.g. https://git.example/api/v1
        /// [default: the forge's documented one on the remote's host].
        #[arg(long, env = "HANGAR_FORGE_API_URL", value_name = "URL")]
        forge_api: Option<String>,
        /// With `--pr`: the repository on the forge, owner/name [default: from the remote URL].
        #[arg(long, env = "HANGAR_FORGE_PROJECT", value_name = "OWNER/NAME")]
        forge_project: Option<String>,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check commit messages against Conventional Commits (a range, a message file, or stdin).
    Commitlint {
        /// Commits to check, e.g. `origin/main..HEAD` [default: HEAD~1..HEAD].
        range: Option<String>,
        /// Check the message in this file (a commit-msg hook passes `.git/COMMIT_EDITMSG`); `-` reads stdin.
        #[arg(long)]
        edit: Option<PathBuf>,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Where `--pr` opens its pull request, as the user named it.
struct ForgeArgs {
    kind: Option<String>,
    api_url: Option<String>,
    project: Option<String>,
}

enum Proposed {
    Opened(hangar_server::forge_pr::Opened),
    /// No token: the link to open it by hand, for a GitHub remote.
    Compare(Option<String>),
    Failed(String),
}

/// The forge token from the environment, if any.
fn forge_token() -> Option<String> {
    ["HANGAR_FORGE_TOKEN", "GITHUB_TOKEN"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|t| !t.trim().is_empty()))
}

/// The forge credential of `remote` with `token`, as the user named it.
fn credential(
    dir: &std::path::Path,
    remote: &str,
    args: &ForgeArgs,
    token: &str,
) -> Result<hangar_store::ForgeCredential, String> {
    let url = hangar_release::git::git(dir, &["remote", "get-url"], &[remote])
        .map_err(|e| format!("{e:#}"))?
        .trim()
        .to_string();
    hangar_server::forge_pr::credential_for_remote(
        &url,
        args.kind.as_deref(),
        args.api_url.as_deref(),
        args.project.as_deref(),
        token,
    )
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Before an existing release branch is refreshed: with a forge token, its
/// pull request must not be merged or closed already (a refresh would then
/// reopen nothing and prepare a release nobody reviews). Without a token
/// the branch is refreshed as asked.
fn check_existing(
    dir: &std::path::Path,
    remote: &str,
    args: &ForgeArgs,
    existing: &hangar_release::pr::Existing,
) -> anyhow::Result<()> {
    use hangar_server::forge_pr::PrState;
    let Some(token) = forge_token() else {
        return Ok(());
    };
    let branch = &existing.branch;
    let cred = credential(dir, remote, args, &token).map_err(|e| {
        anyhow::anyhow!("{branch} exists already, and its pull request cannot be looked up: {e}")
    })?;
    let base = hangar_release::git::git(dir, &["symbolic-ref", "-q", "--short", "HEAD"], &[])
        .map(|b| b.trim().to_string())
        .unwrap_or_default();
    let client = reqwest::Client::new();
    let policy = hangar_server::forge_status::RetryPolicy::default();
    let state = runtime()?
        .block_on(hangar_server::forge_pr::release_pr_state(
            &client, &policy, &cred, branch, &base,
        ))
        .map_err(|e| {
            anyhow::anyhow!("{branch} exists already, and the forge did not say whether its pull request is still open: {e:#}")
        })?;
    match state {
        Some((PrState::Merged, pr)) => anyhow::bail!(
            "{branch} exists already and its pull request #{} was merged ({}): pull {base} and run `hangar release` there to tag the merge; to release again, delete the branch (git push {remote} --delete {branch}) first",
            pr.number,
            pr.url
        ),
        Some((PrState::Closed, pr)) => anyhow::bail!(
            "{branch} exists already and its pull request #{} was closed without merging ({}): reopen it and run again to refresh it, or delete the branch (git push {remote} --delete {branch}) to prepare the release anew",
            pr.number,
            pr.url
        ),
        _ => Ok(()),
    }
}

/// Opens (or updates) the pull request of the release branch `--pr` pushed,
/// with the token from the environment; without one, the compare link.
fn propose(
    dir: &std::path::Path,
    remote: &str,
    args: &ForgeArgs,
    outcomes: &[hangar_release::Outcome],
) -> Proposed {
    let released: Vec<&hangar_release::Outcome> = outcomes.iter().filter(|o| o.released).collect();
    let Some(first) = released.first() else {
        return Proposed::Compare(None);
    };
    let (Some(branch), Some(base)) = (first.branch.clone(), first.base.clone()) else {
        return Proposed::Compare(None);
    };
    let Some(token) = forge_token() else {
        return Proposed::Compare(hangar_release::pr::compare_link(
            dir, remote, &base, &branch,
        ));
    };
    let pushed = |why: String| {
        Proposed::Failed(format!(
            "{branch} is pushed to {remote}, but its pull request was not opened: {why}"
        ))
    };
    let cred = match credential(dir, remote, args, &token) {
        Ok(c) => c,
        Err(e) => return pushed(e),
    };
    let tags: Vec<String> = released.iter().filter_map(|o| o.tag.clone()).collect();
    let body: String = released
        .iter()
        .map(|o| o.notes.trim_end())
        .collect::<Vec<_>>()
        .join("\n\n");
    let pr = hangar_server::forge_pr::ReleasePr {
        head: branch.clone(),
        base,
        title: hangar_release::pr::title(&tags),
        body,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => return pushed(e.to_string()),
    };
    let client = reqwest::Client::new();
    let policy = hangar_server::forge_status::RetryPolicy::default();
    match runtime.block_on(hangar_server::forge_pr::open_release_pr(
        &client, &policy, &cred, &pr,
    )) {
        Ok(o) => Proposed::Opened(o),
        Err(e) => pushed(format!("{e:#}")),
    }
}

mod semver_arg {
    #[derive(Clone, Debug)]
    pub struct V(pub semver::Version);
    impl std::str::FromStr for V {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            semver::Version::parse(s.trim_start_matches('v'))
                .map(V)
                .map_err(|e| format!("`{s}` is not a semantic version: {e}"))
        }
    }
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Release {
            dry_run,
            pre,
            force,
            notes,
            package,
            no_commit,
            no_tag,
            pr,
            remote,
            no_push,
            forge,
            forge_api,
            forge_project,
            dir,
            json,
        } => {
            let forge_args = ForgeArgs {
                kind: forge,
                api_url: forge_api,
                project: forge_project,
            };
            let opts = Options {
                dir,
                dry_run: dry_run || notes,
                pre,
                force: force.map(|v| v.0),
                package,
                no_commit,
                no_tag,
            };
            let outcomes = if pr {
                let (dir, remote, args) = (&opts.dir, remote.as_str(), &forge_args);
                hangar_release::pr::prepare_with(&opts, remote, !no_push, &|e| {
                    check_existing(dir, remote, args, e)
                })?
            } else {
                hangar_release::run(&opts)?
            };
            // The pushed release branch becomes a pull request on the forge.
            let proposed = if pr && !opts.dry_run && !no_push {
                Some(propose(&opts.dir, &remote, &forge_args, &outcomes))
            } else {
                None
            };
            if json {
                let mut v = serde_json::to_value(&outcomes)?;
                if let (Some(Proposed::Opened(o)), Some(list)) = (&proposed, v.as_array_mut()) {
                    for item in list.iter_mut().filter(|i| i["released"] == true) {
                        item["pull_request"] = serde_json::json!({
                            "number": o.number,
                            "url": o.url,
                            "created": o.created,
                        });
                    }
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(match proposed {
                    Some(Proposed::Failed(e)) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                    _ => ExitCode::SUCCESS,
                });
            }
            for o in &outcomes {
                let who = o
                    .package
                    .as_deref()
                    .map(|p| format!("{p}: "))
                    .unwrap_or_default();
                for w in &o.warnings {
                    eprintln!("warning: {who}{w}");
                }
                for n in &o.nonconforming {
                    eprintln!(
                        "warning: {who}commit {} is not a Conventional Commit and was left out: {}",
                        &n.sha[..7.min(n.sha.len())],
                        n.subject
                    );
                }
                if notes {
                    print!("{}", o.notes);
                    continue;
                }
                if !o.released {
                    println!(
                        "{who}nothing to release: {}",
                        o.reason.as_deref().unwrap_or("")
                    );
                    continue;
                }
                if let Some(branch) = &o.branch {
                    let verb = match (dry_run, o.refreshed) {
                        (true, _) => "would prepare",
                        (false, true) => "refreshed",
                        (false, false) => "prepared",
                    };
                    println!(
                        "{who}{verb} {} on branch {branch} (tag {} once merged, {} commits, previous {})",
                        o.version.as_deref().unwrap_or(""),
                        o.tag.as_deref().unwrap_or(""),
                        o.commits,
                        o.previous.as_deref().unwrap_or("none")
                    );
                    for e in &o.explain {
                        println!("  note: {e}");
                    }
                    if dry_run {
                        println!("\n{}", o.notes);
                    } else if !o.files.is_empty() {
                        println!("  updated {}", o.files.join(", "));
                    }
                    continue;
                }
                if let Some(commit) = &o.merge {
                    let verb = if dry_run { "would tag" } else { "tagged" };
                    println!(
                        "{who}{verb} {} on {} (released {}, prepared for review and merged)",
                        o.tag.as_deref().unwrap_or(""),
                        &commit[..7.min(commit.len())],
                        o.version.as_deref().unwrap_or("")
                    );
                    for e in &o.explain {
                        println!("  note: {e}");
                    }
                    continue;
                }
                let verb = if dry_run { "would release" } else { "released" };
                println!(
                    "{who}{verb} {} (tag {}, {} commits, previous {})",
                    o.version.as_deref().unwrap_or(""),
                    o.tag.as_deref().unwrap_or(""),
                    o.commits,
                    o.previous.as_deref().unwrap_or("none")
                );
                if dry_run {
                    for e in &o.explain {
                        println!("  note: {e}");
                    }
                    println!("\n{}", o.notes);
                } else if !o.files.is_empty() {
                    println!("  updated {}", o.files.join(", "));
                }
            }
            Ok(match proposed {
                Some(Proposed::Opened(o)) => {
                    let verb = if o.created {
                        "opened"
                    } else {
                        "updated the open"
                    };
                    println!("{verb} pull request #{}: {}", o.number, o.url);
                    ExitCode::SUCCESS
                }
                Some(Proposed::Compare(Some(link))) => {
                    println!("open the pull request: {link}");
                    ExitCode::SUCCESS
                }
                Some(Proposed::Failed(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
                Some(Proposed::Compare(None)) | None => ExitCode::SUCCESS,
            })
        }
        Command::Commitlint {
            range,
            edit,
            dir,
            json,
        } => {
            let results: Vec<(String, String, Vec<String>)> = if let Some(path) = edit {
                let mut text = String::new();
                if path.as_os_str() == "-" {
                    std::io::stdin().read_to_string(&mut text)?;
                } else {
                    text = std::fs::read_to_string(&path)?;
                }
                // Git's commit template comments are not part of the message.
                let msg: String = text
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n");
                vec![(
                    "message".into(),
                    msg.lines().next().unwrap_or("").to_string(),
                    lint(&msg),
                )]
            } else {
                commitlint(&dir, range.as_deref().unwrap_or("HEAD~1..HEAD"))?
            };
            let bad = results.iter().filter(|r| !r.2.is_empty()).count();
            if json {
                let v: Vec<_> = results.iter().map(|(sha, subject, problems)| serde_json::json!({"commit": sha, "subject": subject, "problems": problems})).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (sha, subject, problems) in &results {
                    for p in problems {
                        println!("{sha} {subject}\n  {p}");
                    }
                }
                println!("{} checked, {bad} with problems", results.len());
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
