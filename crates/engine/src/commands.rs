//! Workflow commands written to stdout: `::name key=value,key=value::message`.

use std::collections::BTreeMap;

/// A parsed `::command::` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    /// Property names in lower case: the runner reads them ignoring case
    /// (`endLine`, `ENDLINE`).
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
        if let Some((k, v)) = pair.split_once('=')
            && !k.is_empty()
            && !v.is_empty()
        {
            props.insert(k.to_ascii_lowercase(), unescape_property(v));
        }
    }
    Some(Command {
        name: name.to_string(),
        props,
        message: unescape_data(message),
    })
}

/// `%0D` `%0A` `%25` as the runner's `ActionCommand` decodes message data:
/// in that order and case-sensitive (`%0a` stays as written).
pub fn unescape_data(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

/// Property values additionally escape `:` and `,`.
pub fn unescape_property(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
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
        // Property names ignore case; escapes are case-sensitive; `%25` is
        // decoded last, so `%250A` is a literal `%0A`.
        let c = parse("::warning ENDLINE=3,Title=x%2cy::a%0ab%250A").unwrap();
        assert_eq!(c.props["endline"], "3");
        assert_eq!(c.props["title"], "x%2cy");
        assert_eq!(c.message, "a%0ab%0A");
        assert_eq!(parse("::endgroup::").unwrap().name, "endgroup");
        assert_eq!(parse("  ::add-mask::x").unwrap().message, "x");
        assert!(parse("not ::a command::").is_none());
        assert!(parse("::no-terminator").is_none());
    }
}
