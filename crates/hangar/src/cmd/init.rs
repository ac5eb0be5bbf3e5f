//! `hangar init`: writes the starter hangar.yml that `hangar_project::starter`
//! makes from what the project already has.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    hangar init                 # write ./hangar.yml from what this project has\n  \
    hangar init --dir api --print\n  \
    hangar init --force         # replace an existing hangar.yml")]
pub struct Args {
    /// The project directory.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Replace an existing hangar.yml.
    #[arg(long)]
    force: bool,
    /// Print the file instead of writing it.
    #[arg(long)]
    print: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = args.dir.join("hangar.yml");
    if target.exists() && !args.force && !args.print {
        bail!(
            "{} already exists; `hangar validate` checks it, `hangar init --force` replaces it",
            target.display()
        );
    }
    let found = hangar_project::starter::detect(&args.dir).map_err(anyhow::Error::msg)?;
    if found.is_empty() {
        bail!(
            "found nothing to run in {}: hangar init reads a Procfile, Cargo.toml (a binary), \
             package.json (a `start` script), go.mod with main.go, manage.py or app.py; \
             write `services:` yourself (docs/hangar-yml.md shows every key)",
            args.dir.display()
        );
    }
    let text = hangar_project::starter::render(&found);
    // What init writes is what validate accepts: checked here, never by the user first.
    if let Err(errors) = hangar_project::parse("hangar.yml", &text) {
        bail!(
            "hangar init produced a file hangar cannot read (a bug; please report it):\n{errors}"
        );
    }
    if args.print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::write(&target, &text).with_context(|| format!("writing {}", target.display()))?;
    println!("wrote {}", target.display());
    for f in &found {
        println!("  service {:<12} from {}", f.name, f.from);
    }
    println!(
        "\nEach instance gets its port in $PORT: make sure the service listens on it.\n\
         Next:\n  hangar validate              # check it\n  \
         hangar up dev               # start the services behind the router\n  \
         hangar deploy staging        # a blue-green deployment\n  \
         hangar run                   # run .github/workflows locally"
    );
    Ok(ExitCode::SUCCESS)
}
