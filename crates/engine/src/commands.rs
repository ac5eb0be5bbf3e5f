//! Workflow commands written to stdout: `::name key=value,key=value::message`.

use std::collections::BTreeMap;

/// A parsed `::command::` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub props: BTreeMap<String, String>,
    pub message: String,
}

/// Parses one output line; `None` when it is not a command.
pub fn parse(line: &str) -> Option<Command> {
    let body = line.trim_start().strip_prefix("::")?;
    let end = body.find("::")?;
    let (head, message) = (&body[..end], &body[end + 2..]);
    let (name, props_text) = match head.find(' ') {
        Some(i) => (&head[..i], head[i + 1..].trim()),
        None => (head, ""),
    };
    if name.is_empty() {
        return None;
    }
    let mut props = BTreeMap::new();
    for pair in props_text.split(',') {
        if let Some((k, v)) = pair.split_once('=') {
            let k = k.trim();
            if !k.is_empty() {
                props.insert(k.to_string(), unescape_property(v));
            }
        }
    }
    Some(Command {
        name: name.to_string(),
        props,
        message: unescape_data(message),
    })
}

/// `%25` `%0D` `%0A` as the runner's `ActionCommand` decodes message data.
pub fn unescape_data(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    s.replace("%0D", "\r")
        .replace("%0d", "\r")
        .replace("%0A", "\n")
        .replace("%0a", "\n")
        .replace("%25", "%")
}

/// Property values additionally escape `:` and `,`.
pub fn unescape_property(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    s.replace("%0D", "\r")
        .replace("%0d", "\r")
        .replace("%0A", "\n")
        .replace("%0a", "\n")
        .replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%2C", ",")
        .replace("%2c", ",")
        .replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_properties_and_escapes() {
        let c = parse("::error file=app.js,line=10,col=15,title=A%3A b::Something%0Awent wrong")
            .unwrap();
        assert_eq!(c.name, "error");
        assert_eq!(c.props["file"], "app.js");
        assert_eq!(c.props["line"], "10");
        assert_eq!(c.props["title"], "A: b");
        assert_eq!(c.message, "Something\nwent wrong");
        assert_eq!(parse("::endgroup::").unwrap().name, "endgroup");
        assert_eq!(parse("  ::add-mask::x").unwrap().message, "x");
        assert!(parse("not ::a command::").is_none());
        assert!(parse("::no-terminator").is_none());
    }
}
