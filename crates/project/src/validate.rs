//! Rules beyond the types: references, cycles, ranges.

use std::collections::HashMap;

use crate::{Location, Project, ProjectError, StrategyKind};

/// Checks what serde cannot: every problem found, with its position.
pub fn validate(file: &str, p: &Project) -> Vec<ProjectError> {
    let mut errors = Vec::new();
    let err = |loc: &Location, message: String, help: Option<String>| ProjectError {
        file: file.to_string(),
        line: loc.line() as u32,
        column: loc.column() as u32,
        message,
        help,
    };
    let names: Vec<&str> = p.services.keys().map(String::as_str).collect();
    for (name, svc) in &p.services {
        if svc.value.instances == 0 {
            errors.push(err(
                &svc.referenced,
                format!("service `{name}` has `instances: 0`"),
                Some("use at least 1".into()),
            ));
        }
        if svc.value.stateful && svc.value.instances > 1 {
            errors.push(err(
                &svc.referenced,
                format!(
                    "service `{name}` is `stateful: true` with `instances: {}`",
                    svc.value.instances
                ),
                Some("a stateful service runs one instance on its data, never two at once: use `instances: 1`".into()),
            ));
        }
        if svc.value.run.trim().is_empty() {
            errors.push(err(
                &svc.referenced,
                format!("service `{name}` has an empty `run` command"),
                None,
            ));
        }
        for dep in &svc.value.depends_on {
            if !p.services.contains_key(&dep.value) {
                errors.push(err(
                    &dep.referenced,
                    format!(
                        "service `{name}` depends on unknown service `{}`",
                        dep.value
                    ),
                    Some(suggest(&dep.value, &names)),
                ));
            }
        }
        for (key, value) in &svc.value.env {
            check_refs(
                file,
                p,
                name,
                &format!("env `{key}`"),
                value,
                RefsIn::Env,
                &mut errors,
            );
        }
        if let Some(b) = &svc.value.backup {
            for (what, value) in [("backup.run", &b.run), ("backup.restore", &b.restore)] {
                check_refs(file, p, name, what, value, RefsIn::Backup, &mut errors);
            }
        }
        if let Some(h) = &svc.value.health {
            let kinds = h.path.is_some() as u8 + h.command.is_some() as u8 + h.tcp as u8;
            if kinds > 1 {
                errors.push(err(&svc.referenced, format!("service `{name}`: health check has more than one of `path`, `tcp`, `command`"), Some("keep one".into())));
            }
            if svc.value.protocol == crate::Protocol::Tcp && h.path.is_some() {
                errors.push(err(
                    &svc.referenced,
                    format!("service `{name}` has `protocol: tcp` and an HTTP health check (`path`)"),
                    Some("a tcp service is checked by a connect (`health: { tcp: true }`, the default) or by its own command, e.g. `health: { command: pg_isready -h 127.0.0.1 -p $PORT }`".into()),
                ));
            }
            if let Some(path) = &h.path
                && !path.starts_with('/')
            {
                errors.push(err(
                    &svc.referenced,
                    format!("service `{name}`: health path `{path}` must start with `/`"),
                    None,
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(p) {
        let first = &p.services[&cycle[0]];
        errors.push(err(
            &first.referenced,
            format!("dependency cycle between services: {}", cycle.join(" -> ")),
            Some("remove one `depends_on` edge of the cycle".into()),
        ));
    }
    for (env_name, env) in &p.environments {
        let e = &env.value;
        for svc in e.services.iter() {
            if !p.services.contains_key(&svc.value) {
                errors.push(err(
                    &svc.referenced,
                    format!(
                        "environment `{env_name}` lists unknown service `{}`",
                        svc.value
                    ),
                    Some(suggest(&svc.value, &names)),
                ));
            }
        }
        for (svc, addr) in &e.listen {
            if !p.services.contains_key(svc) {
                errors.push(err(
                    &addr.referenced,
                    format!("environment `{env_name}` sets `listen` for unknown service `{svc}`"),
                    Some(suggest(svc, &names)),
                ));
            }
            if addr.value.parse::<std::net::SocketAddr>().is_err() {
                errors.push(err(
                    &addr.referenced,
                    format!("`{}` is not an address like `127.0.0.1:8080`", addr.value),
                    None,
                ));
            }
        }
        if e.strategy.value == StrategyKind::Canary {
            match &e.canary {
                None => errors.push(err(&e.strategy.referenced, format!("environment `{env_name}` uses `strategy: canary` without a `canary:` section"), Some("add `canary: { steps: [10, 50, 100] }`".into()))),
                Some(c) => {
                    let steps = &c.steps.value;
                    if steps.is_empty() || steps.iter().any(|s| *s == 0 || *s > 100) || steps.windows(2).any(|w| w[0] >= w[1]) {
                        errors.push(err(&c.steps.referenced, format!("environment `{env_name}`: canary steps must be increasing percentages between 1 and 100"), Some("for example `[10, 50, 100]`".into())));
                    } else if steps.last() != Some(&100) {
                        errors.push(err(&c.steps.referenced, format!("environment `{env_name}`: canary steps end at {}%, so the new version would never take all traffic", steps.last().copied().unwrap_or(0)), Some(format!("end the steps with 100: `{:?}`", steps.iter().copied().chain([100]).collect::<Vec<_>>()))));
                    }
                }
            }
        }
        // Two services behind one address: the second router could not listen.
        let mut taken: HashMap<std::net::SocketAddr, &str> = HashMap::new();
        for svc in p.services_with_dependencies(Some(e)) {
            let Some(addr) = p.listen_address(e, &svc) else {
                continue;
            };
            let Ok(sock) = addr.parse::<std::net::SocketAddr>() else {
                continue; // reported above
            };
            if sock.port() == 0 {
                continue; // any free port
            }
            let Some(at) = e
                .listen
                .get(&svc)
                .map(|a| a.referenced)
                .or_else(|| p.services.get(&svc).map(|s| s.referenced))
            else {
                continue;
            };
            match taken.get(&sock) {
                Some(other) => errors.push(err(
                    &at,
                    format!("environment `{env_name}`: services `{other}` and `{svc}` both listen on {sock}"),
                    Some(format!("give `{svc}` its own address under `listen:` in environment `{env_name}`")),
                )),
                None => {
                    taken.insert(sock, p.services.get_key_value(&svc).map(|(k, _)| k.as_str()).unwrap_or(""));
                }
            }
        }
        if let Some(m) = &e.metrics_listen
            && m.value.parse::<std::net::SocketAddr>().is_err()
        {
            errors.push(err(
                &m.referenced,
                format!(
                    "environment `{env_name}`: `metrics_listen: {}` is not an address like `127.0.0.1:9464`",
                    m.value
                ),
                None,
            ));
        }
        if let Some(alerts) = &e.alerts {
            if let Some(url) = &alerts.webhook
                && !(url.value.starts_with("http://") || url.value.starts_with("https://"))
            {
                errors.push(err(
                    &url.referenced,
                    format!(
                        "environment `{env_name}`: alert webhook `{}` is not an http:// or https:// URL",
                        url.value
                    ),
                    None,
                ));
            }
            if alerts.interval.0.is_zero() {
                errors.push(err(
                    &env.referenced,
                    format!("environment `{env_name}`: `alerts.interval` must be more than 0"),
                    Some("for example `interval: 10s`".into()),
                ));
            }
            for (rule_name, rule) in &alerts.rules {
                let r = &rule.value;
                if let Some(svc) = &r.service
                    && !p.services.contains_key(&svc.value)
                {
                    errors.push(err(
                        &svc.referenced,
                        format!(
                            "environment `{env_name}`: alert `{rule_name}` watches unknown service `{}`",
                            svc.value
                        ),
                        Some(suggest(&svc.value, &names)),
                    ));
                }
                if let Err(message) = r.limit() {
                    let at = r
                        .threshold
                        .as_ref()
                        .map(|t| t.referenced)
                        .unwrap_or(rule.referenced);
                    errors.push(err(
                        &at,
                        format!("environment `{env_name}`: alert `{rule_name}`: {message}"),
                        None,
                    ));
                }
                if r.window.0.is_zero() {
                    errors.push(err(
                        &rule.referenced,
                        format!(
                            "environment `{env_name}`: alert `{rule_name}` has a `window` of 0"
                        ),
                        Some(
                            "requests are counted over the window: for example `window: 1m`".into(),
                        ),
                    ));
                }
            }
        }
        if e.keep_releases == 0 {
            errors.push(err(
                &env.referenced,
                format!("environment `{env_name}`: `keep_releases` must be at least 1"),
                None,
            ));
        }
    }
    if let Some(r) = &p.recovery {
        validate_recovery(file, p, r, &mut errors);
    }
    errors.extend(validate_notifications(file, p));
    errors
}

/// Where `${{ services.… }}` references are read, which decides who they may name.
#[derive(Clone, Copy, PartialEq)]
enum RefsIn {
    /// An instance's `env:`: the address is resolved when the instance
    /// starts, so the service named must be a dependency (started first),
    /// never the service itself (`$PORT` is its own).
    Env,
    /// A `backup:` command: run against the running environment, so any
    /// service may be named, the one backed up first of all.
    Backup,
}

/// The `${{ services.NAME.FIELD }}` references of one value of service
/// `owner` (`what`: `env `KEY`` or `backup.run`): the one check for every
/// place hangar.yml allows them.
fn check_refs(
    file: &str,
    p: &Project,
    owner: &str,
    what: &str,
    value: &crate::Spanned<String>,
    place: RefsIn,
    errors: &mut Vec<ProjectError>,
) {
    let names: Vec<&str> = p.services.keys().map(String::as_str).collect();
    let mut err = |message: String, help: Option<String>| {
        errors.push(ProjectError {
            file: file.to_string(),
            line: value.referenced.line() as u32,
            column: value.referenced.column() as u32,
            message: format!("service `{owner}`: {what}: {message}"),
            help,
        })
    };
    let refs = match crate::refs::service_refs(&value.value) {
        Ok(refs) => refs,
        Err(e) => return err(e, None),
    };
    for r in refs {
        let written = &value.value[r.range.clone()];
        if !p.services.contains_key(&r.service) {
            err(
                format!("`{written}` names unknown service `{}`", r.service),
                Some(suggest(&r.service, &names)),
            );
            continue;
        }
        if !crate::refs::SERVICE_FIELDS.contains(&r.field.as_str()) {
            let fields = crate::refs::SERVICE_FIELDS;
            err(
                format!("`{written}`: a service has no field `{}`", r.field),
                Some(
                    match hangar_diag::did_you_mean(&r.field, fields.iter().copied()) {
                        Some(f) => format!("did you mean `{f}`?"),
                        None => format!("use one of: {}", fields.join(", ")),
                    },
                ),
            );
            continue;
        }
        if place == RefsIn::Backup {
            continue;
        }
        let deps = &p.services[owner].value.depends_on;
        if r.service == owner {
            err(
                format!("`{written}` is the service itself"),
                Some("an instance's own port is `$PORT`".into()),
            );
        } else if !deps.iter().any(|d| d.value == r.service) {
            err(
                format!(
                    "`{written}` names `{}`, which `{owner}` does not depend on",
                    r.service
                ),
                Some(format!(
                    "add `{}` to `depends_on` of `{owner}`, so that it starts first",
                    r.service
                )),
            );
        }
    }
}

/// `recovery:`: one schedule at most (`every` or `schedule`), a period above
/// zero or a cron expression `hangar_units::cron` reads, and the environments
/// it covers, each one hangar.yml defines.
fn validate_recovery(file: &str, p: &Project, r: &crate::Recovery, errors: &mut Vec<ProjectError>) {
    let err = |loc: &Location, message: String, help: Option<String>| ProjectError {
        file: file.to_string(),
        line: loc.line() as u32,
        column: loc.column() as u32,
        message,
        help,
    };
    let envs: Vec<&str> = p.environments.keys().map(String::as_str).collect();
    if let Some(every) = &r.every
        && every.value.0.is_zero()
    {
        errors.push(err(
            &every.referenced,
            "`recovery.every` must be more than 0".into(),
            Some("for example `every: 1h`".into()),
        ));
    }
    if let Some(schedule) = &r.schedule {
        if r.every.is_some() {
            errors.push(err(
                &schedule.referenced,
                "`recovery` has both `every` and `schedule`: backups keep one schedule".into(),
                Some(
                    "keep `every: 1h` (a period from the newest backup) or `schedule: \"0 3 * * *\"` (fixed times, UTC)"
                        .into(),
                ),
            ));
        } else if let Err(e) =
            hangar_units::cron::parse(&schedule.value, hangar_units::cron::Seconds::Allowed)
        {
            errors.push(err(
                &schedule.referenced,
                format!("`recovery.schedule`: {e}"),
                Some(
                    "minute hour day-of-month month day-of-week, in UTC: `0 3 * * *` is every day at 03:00, `0 * * * *` every hour"
                        .into(),
                ),
            ));
        }
    }
    let scheduled = match (&r.every, &r.schedule) {
        (Some(e), _) => Some(("every", &e.referenced)),
        (None, Some(s)) => Some(("schedule", &s.referenced)),
        (None, None) => None,
    };
    if let Some((key, at)) = scheduled
        && r.environments.is_empty()
    {
        errors.push(err(
            at,
            format!("`recovery.{key}` needs the environments it backs up"),
            Some(format!(
                "add `environments: [{}]` under `recovery:`",
                envs.first().copied().unwrap_or("prod")
            )),
        ));
    }
    for e in &r.environments {
        if !p.environments.contains_key(&e.value) {
            errors.push(err(
                &e.referenced,
                format!(
                    "`recovery.environments` names unknown environment `{}`",
                    e.value
                ),
                Some(
                    match hangar_diag::did_you_mean(&e.value, envs.iter().copied()) {
                        Some(k) => format!("did you mean `{k}`?"),
                        None if envs.is_empty() => "no environments are defined".into(),
                        None => format!("known environments: {}", envs.join(", ")),
                    },
                ),
            ));
        }
    }
}

/// A secret's name as the server stores it: letters, digits and `_`, not
/// starting with a digit (GitHub's rule for secret names).
fn is_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_notifications(file: &str, p: &Project) -> Vec<ProjectError> {
    use crate::{NOTIFICATION_CHANNELS, NOTIFICATION_EVENTS};
    let err = |loc: &Location, message: String, help: Option<String>| ProjectError {
        file: file.to_string(),
        line: loc.line() as u32,
        column: loc.column() as u32,
        message,
        help,
    };
    let mut errors = Vec::new();
    for (i, rule) in p.notifications.iter().enumerate() {
        let r = &rule.value;
        if r.events.is_empty() {
            errors.push(err(
                &rule.referenced,
                format!("notifications[{i}]: `events` is empty"),
                Some(format!(
                    "name one or more of {}",
                    NOTIFICATION_EVENTS.join(", ")
                )),
            ));
        }
        for e in &r.events {
            if !NOTIFICATION_EVENTS.contains(&e.value.as_str()) {
                let help = match hangar_diag::did_you_mean(
                    &e.value,
                    NOTIFICATION_EVENTS.iter().copied(),
                ) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => format!("known events: {}", NOTIFICATION_EVENTS.join(", ")),
                };
                errors.push(err(
                    &e.referenced,
                    format!("notifications[{i}]: unknown event `{}`", e.value),
                    Some(help),
                ));
            }
        }
        if !NOTIFICATION_CHANNELS.contains(&r.channel.value.as_str()) {
            errors.push(err(
                &r.channel.referenced,
                format!("notifications[{i}]: unknown channel `{}`", r.channel.value),
                Some(format!("use {}", NOTIFICATION_CHANNELS.join(", "))),
            ));
        }
        for (key, name) in [
            ("url_secret", Some(&r.url_secret)),
            ("signing_secret", r.signing_secret.as_ref()),
        ] {
            let Some(name) = name else { continue };
            if name.value.contains("://") || name.value.contains('@') {
                errors.push(err(
                    &name.referenced,
                    format!("notifications[{i}]: `{key}` holds a value, not a secret's name"),
                    Some("this file is in the repository: store the URL or key as a secret of the repository or the server (PUT /api/v1/repos/{id}/secrets/NAME) and write its NAME here".into()),
                ));
            } else if !is_secret_name(&name.value) {
                errors.push(err(
                    &name.referenced,
                    format!(
                        "notifications[{i}]: `{key}` `{}` is not a secret's name",
                        name.value
                    ),
                    Some(
                        "secret names are letters, digits and `_`, not starting with a digit"
                            .into(),
                    ),
                ));
            }
        }
        if r.signing_secret.is_some() && r.channel.value != "webhook" {
            errors.push(err(
                &r.channel.referenced,
                format!("notifications[{i}]: `signing_secret` is only for the `webhook` channel"),
                None,
            ));
        }
    }
    errors
}

fn suggest(name: &str, known: &[&str]) -> String {
    match hangar_diag::did_you_mean(name, known.iter().copied()) {
        Some(k) => format!("did you mean `{k}`?"),
        None if known.is_empty() => "no services are defined".into(),
        None => format!("known services: {}", known.join(", ")),
    }
}

fn find_cycle(p: &Project) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn dfs(
        p: &Project,
        n: &str,
        marks: &mut HashMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.to_string(), Mark::Visiting);
        stack.push(n.to_string());
        if let Some(svc) = p.services.get(n) {
            for d in &svc.value.depends_on {
                if p.services.contains_key(&d.value)
                    && let Some(c) = dfs(p, &d.value, marks, stack)
                {
                    return Some(c);
                }
            }
        }
        stack.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for name in p.services.keys() {
        if let Some(c) = dfs(p, name, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}
