//! The starter hangar.yml `hangar init` writes, from what a project already
//! has: a Procfile (one service a line), Cargo.toml (a binary), package.json
//! (a `start` script), go.mod with main.go, or a Python entry point
//! (manage.py, app.py). What `render` makes is what [`crate::parse`] accepts:
//! a test holds it to that.

use std::fmt::Write as _;
use std::path::Path;

/// One service found in the project, and where it was found.
#[derive(Debug)]
pub struct Found {
    pub name: String,
    pub build: Option<String>,
    pub run: String,
    pub artifact: Option<String>,
    /// What it was found in, for the user.
    pub from: String,
}

pub fn detect(dir: &Path) -> Result<Vec<Found>, String> {
    let procfile = dir.join("Procfile");
    if procfile.is_file() {
        let text = std::fs::read_to_string(&procfile)
            .map_err(|e| format!("{}: {e}", procfile.display()))?;
        return Ok(from_procfile(&text));
    }
    let mut found = Vec::new();
    if let Some(f) = from_cargo(dir)? {
        found.push(f);
    }
    if let Some(f) = from_package_json(dir)? {
        found.push(f);
    }
    if let Some(f) = from_go(dir)? {
        found.push(f);
    }
    if let Some(f) = from_python(dir) {
        found.push(f);
    }
    // Two detectors naming one service: the later one gets a suffix.
    let mut seen = std::collections::HashSet::new();
    for f in &mut found {
        while !seen.insert(f.name.clone()) {
            f.name.push_str("-2");
        }
    }
    Ok(found)
}

/// A service name hangar.yml accepts: lower-case letters, digits and `-`.
fn service_name(raw: &str) -> String {
    let raw = raw.rsplit('/').next().unwrap_or(raw);
    let mut out = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "app".into() } else { out }
}

/// Heroku's Procfile: `name: command` per line.
fn from_procfile(text: &str) -> Vec<Found> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, c)| !n.trim().is_empty() && !c.trim().is_empty())
        .map(|(n, c)| Found {
            name: service_name(n.trim()),
            build: None,
            run: c.trim().to_string(),
            artifact: None,
            from: "Procfile".into(),
        })
        .collect()
}

fn from_cargo(dir: &Path) -> Result<Option<Found>, String> {
    let manifest = dir.join("Cargo.toml");
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        return Ok(None);
    };
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("{}: not valid TOML: {}", manifest.display(), e.message()))?;
    let package = doc
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str());
    let first_bin = doc
        .get("bin")
        .and_then(|b| b.as_array())
        .and_then(|b| b.first())
        .and_then(|b| b.get("name"))
        .and_then(|n| n.as_str());
    let bin = match (first_bin, package) {
        (Some(bin), _) => bin,
        (None, Some(pkg)) if dir.join("src/main.rs").is_file() => pkg,
        _ => return Ok(None),
    };
    Ok(Some(Found {
        name: service_name(bin),
        build: Some("cargo build --release".into()),
        run: format!("./target/release/{bin}"),
        artifact: Some(format!("target/release/{bin}")),
        from: "Cargo.toml".into(),
    }))
}

fn from_package_json(dir: &Path) -> Result<Option<Found>, String> {
    let path = dir.join("package.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
    let scripts = &doc["scripts"];
    if scripts["start"].as_str().is_none() {
        return Ok(None);
    }
    let install = if dir.join("package-lock.json").is_file() {
        "npm ci"
    } else {
        "npm install"
    };
    let build = match scripts["build"].as_str() {
        Some(_) => format!("{install} && npm run build"),
        None => install.to_string(),
    };
    Ok(Some(Found {
        name: service_name(doc["name"].as_str().unwrap_or("web")),
        build: Some(build),
        run: "npm start".into(),
        artifact: None,
        from: "package.json (scripts.start)".into(),
    }))
}

fn from_go(dir: &Path) -> Result<Option<Found>, String> {
    let Ok(text) = std::fs::read_to_string(dir.join("go.mod")) else {
        return Ok(None);
    };
    if !dir.join("main.go").is_file() {
        return Ok(None);
    }
    let module = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("module "))
        .map(str::trim)
        .unwrap_or("app");
    let name = service_name(module);
    Ok(Some(Found {
        build: Some(format!("go build -o bin/{name} .")),
        run: format!("./bin/{name}"),
        artifact: Some(format!("bin/{name}")),
        name,
        from: "go.mod and main.go".into(),
    }))
}

fn from_python(dir: &Path) -> Option<Found> {
    let name = service_name(dir.canonicalize().ok()?.file_name()?.to_str()?);
    if dir.join("manage.py").is_file() {
        return Some(Found {
            name,
            build: None,
            run: "python3 manage.py runserver 127.0.0.1:$PORT --noreload".into(),
            artifact: None,
            from: "manage.py (Django)".into(),
        });
    }
    if dir.join("app.py").is_file() {
        return Some(Found {
            name,
            build: None,
            run: "python3 app.py".into(),
            artifact: None,
            from: "app.py".into(),
        });
    }
    None
}

fn yaml_string(s: &str) -> String {
    // Single-quoted YAML: only `'` needs escaping, and nothing is interpreted.
    format!("'{}'", s.replace('\'', "''"))
}

pub fn render(found: &[Found]) -> String {
    let mut out = String::from(
        "# Written by `hangar init` from what this project has; every key is in\n\
         # docs/hangar-yml.md of hangar's repository. Each instance gets its port in $PORT.\n\
         services:\n",
    );
    for (i, f) in found.iter().enumerate() {
        let _ = writeln!(out, "  {}:                       # from {}", f.name, f.from);
        if let Some(build) = &f.build {
            let _ = writeln!(out, "    build: {}", yaml_string(build));
        }
        let _ = writeln!(out, "    run: {}", yaml_string(&f.run));
        if let Some(artifact) = &f.artifact {
            let _ = writeln!(out, "    artifact: [{}]", yaml_string(artifact));
        }
        out.push_str(
            "    health: { tcp: true }       # or `path: /health` when it answers HTTP there\n",
        );
        let _ = writeln!(out, "    listen: 127.0.0.1:{}", 8080 + i);
    }
    out.push_str(
        "\nenvironments:\n  \
         dev:\n    strategy: rolling\n  \
         staging:\n    strategy: blue-green\n    blue_green: { auto_promote: true }\n  \
         production:\n    strategy: canary\n    \
         canary: { steps: [10, 50, 100], interval: 30s, max_error_rate: 1% }\n    \
         # protection: { reviewers: [ops], wait: 5m, branches: [main] }   # enforced by `hangar serve`\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_service_names() {
        assert_eq!(service_name("@scope/My_App"), "my-app");
        assert_eq!(service_name("github.com/acme/api-server"), "api-server");
        assert_eq!(service_name("___"), "app");
    }

    #[test]
    fn quoted_commands_survive_yaml() {
        let f = vec![Found {
            name: "web".into(),
            build: None,
            run: "sh -c 'echo # not a comment: $PORT'".into(),
            artifact: None,
            from: "Procfile".into(),
        }];
        let text = render(&f);
        let project = crate::parse("hangar.yml", &text).unwrap();
        assert!(format!("{project:?}").contains("echo # not a comment: $PORT"));
    }
}
