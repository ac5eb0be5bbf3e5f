//! Input files parsed to JSON values, one per document (multi-document YAML
//! yields one per `---` section), each with the line the document starts on.
//!
//! The shapes are conftest's, so its policies read hangar's inputs unchanged:
//! INI sections as objects with numbers and booleans converted (go-ini plus
//! conftest's conversion), dotenv and Java properties as flat string maps,
//! XML as mxj maps it (`-attr` for attributes, `#text` for mixed text,
//! repeated children as arrays), Dockerfiles as BuildKit instructions.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value};

use crate::dockerfile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Yaml,
    Json,
    Toml,
    Dockerfile,
    Ini,
    Dotenv,
    Properties,
    Xml,
    /// Terraform's HCL2 (`.tf`, `.tfvars`, `.hcl`).
    Hcl2,
}

/// `--parser` names hangar reads, as conftest spells them.
pub const PARSERS: &[(&str, Kind)] = &[
    ("yaml", Kind::Yaml),
    ("json", Kind::Json),
    ("toml", Kind::Toml),
    ("dockerfile", Kind::Dockerfile),
    ("ini", Kind::Ini),
    ("dotenv", Kind::Dotenv),
    ("properties", Kind::Properties),
    ("xml", Kind::Xml),
    ("hcl2", Kind::Hcl2),
];

/// conftest's parsers hangar does not have, with the file names that select
/// them, so a file of such a kind is named rather than silently skipped.
pub const UNSUPPORTED: &[(&str, &[&str])] = &[
    ("hcl1", &[]),
    ("cue", &["cue"]),
    ("hocon", &["hocon"]),
    ("edn", &["edn"]),
    ("jsonnet", &["jsonnet"]),
    ("jsonc", &["jsonc"]),
    ("vcl", &["vcl"]),
    ("groovy", &["groovy"]),
    ("textproto", &["textproto", "textpb", "pbtxt"]),
    ("spdx", &["spdx"]),
    ("cyclonedx", &[]),
    ("ignore", &["gitignore", "dockerignore"]),
    ("nginx", &[]),
];

pub struct Document {
    pub value: Value,
    /// 0-based index within the file.
    pub index: usize,
    /// 1-based line where the document starts.
    pub line: usize,
}

impl Kind {
    /// The kind `--parser NAME` selects; an error names what hangar reads.
    pub fn from_parser(name: &str) -> Result<Kind> {
        let lower = name.to_ascii_lowercase();
        if let Some((_, kind)) = PARSERS.iter().find(|(n, _)| *n == lower) {
            return Ok(*kind);
        }
        let known: Vec<&str> = PARSERS.iter().map(|(n, _)| *n).collect();
        if UNSUPPORTED.iter().any(|(n, _)| *n == lower) {
            bail!(
                "--parser {name}: conftest's {lower} parser has no equivalent in hangar yet (hangar reads {}); convert the file to JSON or YAML first",
                known.join(", ")
            );
        }
        let mut msg = format!(
            "--parser {name}: unknown parser (hangar reads {})",
            known.join(", ")
        );
        if let Some(s) = hangar_diag::did_you_mean(&lower, known.iter().copied()) {
            msg.push_str(&format!("\nhelp: did you mean `--parser {s}`?"));
        }
        bail!(msg)
    }
}

/// The kind of an input by its name, as conftest picks a parser. Rego files
/// are policies, never inputs (`policy/dockerfile.rego` is not a Dockerfile).
pub fn kind_of(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    if ext == "rego" {
        return None;
    }
    if name == "dockerfile"
        || name == "containerfile"
        || name.starts_with("dockerfile.")
        || ext == "dockerfile"
    {
        return Some(Kind::Dockerfile);
    }
    if name == ".env" || name.starts_with(".env.") || ext == "env" {
        return Some(Kind::Dotenv);
    }
    match ext {
        "yaml" | "yml" => Some(Kind::Yaml),
        "json" => Some(Kind::Json),
        "toml" => Some(Kind::Toml),
        "ini" => Some(Kind::Ini),
        "properties" => Some(Kind::Properties),
        "xml" => Some(Kind::Xml),
        "tf" | "tfvars" | "hcl" => Some(Kind::Hcl2),
        _ => None,
    }
}

/// The conftest parser a file would need that hangar lacks, if any.
pub fn unsupported_kind(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name == "nginx.conf" {
        return Some("nginx");
    }
    if name == "jenkinsfile" || name.starts_with("jenkinsfile.") {
        return Some("groovy");
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e)?;
    UNSUPPORTED
        .iter()
        .find(|(_, exts)| exts.contains(&ext))
        .map(|(n, _)| *n)
}

/// Parses `text` as the kind its name says.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Document>> {
    let kind = match kind_of(path) {
        Some(kind) => kind,
        None => {
            let file = path.display();
            if let Some(parser) = unsupported_kind(path) {
                bail!(
                    "{file}: hangar has no {parser} parser yet (conftest's `--parser {parser}`); convert it to JSON or YAML, or leave it out"
                );
            }
            bail!(
                "{file}: unknown input kind (expected .yaml, .yml, .json, .toml, .ini, .env, .properties, .xml, .tf, .tfvars, .hcl or a Dockerfile; `--parser NAME` forces one)"
            )
        }
    };
    parse_as(kind, path, text)
}

fn single(value: Value) -> Vec<Document> {
    vec![Document {
        value,
        index: 0,
        line: 1,
    }]
}

/// Parses `text` as `kind`, whatever the file is called (`--parser`).
pub fn parse_as(kind: Kind, path: &Path, text: &str) -> Result<Vec<Document>> {
    let file = path.display();
    match kind {
        Kind::Json => {
            let value = serde_json::from_str(text)
                .map_err(|e| anyhow!("{file}:{}:{}: invalid JSON: {e}", e.line(), e.column()))?;
            Ok(single(value))
        }
        Kind::Toml => {
            let value: Value = toml::from_str(text).map_err(|e| {
                let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
                anyhow!("{file}:{line}:{col}: invalid TOML: {}", e.message())
            })?;
            Ok(single(value))
        }
        Kind::Dockerfile => Ok(single(dockerfile::parse(text))),
        Kind::Ini => {
            Ok(single(ini(text).map_err(|(line, e)| {
                anyhow!("{file}:{line}:1: invalid INI: {e}")
            })?))
        }
        Kind::Dotenv => {
            Ok(single(dotenv(text).map_err(|(line, e)| {
                anyhow!("{file}:{line}:1: invalid .env: {e}")
            })?))
        }
        Kind::Properties => Ok(single(properties(text))),
        Kind::Hcl2 => Ok(single(hcl2(text).map_err(|e| anyhow!("{file}:{e}"))?)),
        Kind::Xml => Ok(single(xml(text).map_err(|(offset, e)| {
            let (line, col) = line_col(text, offset);
            anyhow!("{file}:{line}:{col}: invalid XML: {e}")
        })?)),
        Kind::Yaml => {
            let starts = yaml_document_starts(text);
            let nodes = hangar_workflow::yaml::parse_stream(text).map_err(|errors| {
                let e = &errors[0];
                anyhow!(
                    "{file}:{}:{}: invalid YAML: {}",
                    e.pos.line,
                    e.pos.column,
                    e.message
                )
            })?;
            Ok(nodes
                .iter()
                .enumerate()
                // Empty documents (a trailing `---`) carry nothing to check.
                .filter(|(_, node)| node.kind != hangar_workflow::yaml::Kind::Null)
                .map(|(index, node)| Document {
                    value: node.to_json(),
                    index,
                    line: starts.get(index).copied().unwrap_or(1),
                })
                .collect())
        }
    }
}

/// HCL2 as conftest gives it (its parser is tmccombs/hcl2json's `convert`):
/// a block nests under its type and each label, and its body is always
/// wrapped in a list (`resource "aws_s3_bucket" "b" {}` is
/// `resource.aws_s3_bucket.b[0]`; a second such block is the list's second
/// item); attributes are values; an expression that is not a literal stays as
/// its `${...}` text. hcl-rs parses; the shape is built here because its own
/// serde mapping merges blocks into objects, which conftest's policies (`some
/// lb in input.resource.aws_alb_listener[name]`) do not expect.
fn hcl2(text: &str) -> Result<Value, String> {
    let body = hcl::parse(text).map_err(|e| match e {
        hcl::Error::Parse(p) => format!(
            "{}:{}: invalid HCL: {}",
            p.location().line(),
            p.location().column(),
            p.message()
        ),
        other => format!("1:1: invalid HCL: {other}"),
    })?;
    Ok(hcl_body(&body))
}

fn hcl_body(body: &hcl::Body) -> Value {
    let mut out = serde_json::Map::new();
    for attr in body.attributes() {
        out.insert(attr.key.to_string(), hcl_expr(&attr.expr));
    }
    for block in body.blocks() {
        let mut path = vec![block.identifier.to_string()];
        path.extend(block.labels.iter().map(|l| l.as_str().to_string()));
        insert_block(&mut out, &path, hcl_body(&block.body));
    }
    Value::Object(out)
}

/// Puts a block's body at its type and labels, always in a list.
fn insert_block(map: &mut serde_json::Map<String, Value>, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        match map
            .entry(first.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(items) => items.push(value),
            other => *other = Value::Array(vec![other.take(), value]),
        }
        return;
    }
    // hcl2json refuses a block whose labels collide with an attribute; the attribute stays.
    if let Value::Object(inner) = map
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Default::default()))
    {
        insert_block(inner, rest, value);
    }
}

fn hcl_expr(expr: &hcl::Expression) -> Value {
    use hcl::Expression as E;
    match expr {
        E::Null => Value::Null,
        E::Bool(b) => Value::Bool(*b),
        E::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        E::String(s) => Value::String(s.clone()),
        E::Array(items) => Value::Array(items.iter().map(hcl_expr).collect()),
        E::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        hcl::ObjectKey::Identifier(id) => id.to_string(),
                        hcl::ObjectKey::Expression(E::String(s)) => s.clone(),
                        other => format!("${{{other}}}"),
                    };
                    (key, hcl_expr(v))
                })
                .collect(),
        ),
        // A template keeps its text: literal parts as written, `${...}` parts as source.
        E::TemplateExpr(t) => Value::String(match t.as_ref() {
            hcl::TemplateExpr::QuotedString(s) => s.clone(),
            hcl::TemplateExpr::Heredoc(h) => h.template.clone(),
        }),
        E::Parenthesis(inner) => hcl_expr(inner),
        // `-1` is a number to hcl2json; every other operation is source text.
        E::Operation(op) => match op.as_ref() {
            hcl::Operation::Unary(u)
                if u.operator == hcl::UnaryOperator::Neg && matches!(u.expr, E::Number(_)) =>
            {
                match hcl_expr(&u.expr) {
                    Value::Number(n) => n
                        .as_i64()
                        .map(|i| Value::from(-i))
                        .or_else(|| n.as_f64().map(|f| Value::from(-f)))
                        .unwrap_or(Value::Null),
                    other => other,
                }
            }
            _ => Value::String(format!("${{{expr}}}")),
        },
        other => Value::String(format!("${{{other}}}")),
    }
}

/// INI as conftest gives it: `{section: {key: value}}`, keys before the
/// first section (go-ini's DEFAULT) left out, values that parse as numbers
/// or Go booleans converted.
fn ini(text: &str) -> Result<Value, (usize, String)> {
    let mut out = Map::new();
    let mut section: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or((i + 1, format!("section header `{line}` has no closing `]`")))?
                .trim();
            out.entry(name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            section = Some(name.to_string());
            continue;
        }
        let (key, value) = match line.find(['=', ':']) {
            Some(at) => (line[..at].trim(), line[at + 1..].trim()),
            // go-ini accepts a bare key as a boolean-less key with an empty value.
            None => (line, ""),
        };
        let Some(section) = &section else {
            continue;
        };
        let value = unquote(value);
        let converted = if let Ok(n) = value.parse::<f64>()
            && n.is_finite()
        {
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        } else if let Some(b) = go_bool(value) {
            Value::Bool(b)
        } else {
            Value::String(value.to_string())
        };
        if let Some(Value::Object(o)) = out.get_mut(section) {
            o.insert(key.to_string(), converted);
        }
    }
    Ok(Value::Object(out))
}

fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// dotenv as gotenv's strict parser reads it: `KEY=value` (optional
/// `export `), `#` comments, single quotes literal, double quotes with
/// `\n`-style escapes; a line that is not an assignment is an error.
fn dotenv(text: &str) -> Result<Value, (usize, String)> {
    let mut out = Map::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            return Err((i + 1, format!("`{line}` is not KEY=value")));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err((i + 1, format!("`{key}` is not a variable name")));
        }
        let value = value.trim();
        let value = if let Some(rest) = value.strip_prefix('"') {
            let end = rest
                .rfind('"')
                .ok_or((i + 1, "unterminated double quote".to_string()))?;
            rest[..end]
                .replace("\\n", "\n")
                .replace("\\t", "\t")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else if let Some(rest) = value.strip_prefix('\'') {
            let end = rest
                .rfind('\'')
                .ok_or((i + 1, "unterminated single quote".to_string()))?;
            rest[..end].to_string()
        } else {
            // An unquoted value ends at ` #` (an inline comment).
            value
                .split_once(" #")
                .map(|(v, _)| v)
                .unwrap_or(value)
                .trim()
                .to_string()
        };
        out.insert(key.to_string(), Value::String(value));
    }
    Ok(Value::Object(out))
}

/// Java properties as magiconair/properties reads them: `key=value`,
/// `key: value` or `key value`, `#`/`!` comments, `\` continuations and
/// escapes.
fn properties(text: &str) -> Value {
    let mut out = Map::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let mut logical = first.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some(next) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let chars: Vec<char> = logical.chars().collect();
        let mut key = String::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' if i + 1 < chars.len() => {
                    key.push(unescape_char(chars[i + 1]));
                    i += 2;
                    continue;
                }
                '=' | ':' => break,
                c if c.is_whitespace() => break,
                c => key.push(c),
            }
            i += 1;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() && (chars[i] == '=' || chars[i] == ':') {
            i += 1;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        while i < chars.len() {
            if chars[i] == '\\' && i + 1 < chars.len() {
                if chars[i + 1] == 'u' && i + 5 < chars.len() {
                    let hex: String = chars[i + 2..i + 6].iter().collect();
                    if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        value.push(c);
                        i += 6;
                        continue;
                    }
                }
                value.push(unescape_char(chars[i + 1]));
                i += 2;
            } else {
                value.push(chars[i]);
                i += 1;
            }
        }
        out.insert(key, Value::String(value));
    }
    Value::Object(out)
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

fn unescape_char(c: char) -> char {
    match c {
        't' => '\t',
        'n' => '\n',
        'r' => '\r',
        'f' => '\x0c',
        other => other,
    }
}

/// XML as mxj's `NewMapXml` shapes it (what conftest's XML parser hands
/// policies): an element with only text is its text, attributes are `-name`,
/// text beside children or attributes is `#text`, repeated children become
/// an array, namespace prefixes are dropped.
fn xml(text: &str) -> Result<Value, (usize, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    // Text is trimmed when its element closes: trimming each event would
    // eat the spaces around an entity (`b &amp; c`).
    struct Open {
        name: String,
        map: Map<String, Value>,
        text: String,
    }
    let mut stack: Vec<Open> = vec![Open {
        name: String::new(),
        map: Map::new(),
        text: String::new(),
    }];
    fn local(name: &str) -> String {
        name.rsplit(':').next().unwrap_or_default().to_string()
    }
    fn open(e: &quick_xml::events::BytesStart) -> Result<Open, String> {
        let mut map = Map::new();
        for attr in e.attributes() {
            let attr = attr.map_err(|e| e.to_string())?;
            let key = attr.key.as_ref().to_string();
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?;
            let key = key.rsplit(':').next().unwrap_or_default().to_string();
            map.insert(format!("-{key}"), Value::String(value.into_owned()));
        }
        Ok(Open {
            name: local(e.name().as_ref()),
            map,
            text: String::new(),
        })
    }
    fn close(open: Open) -> Value {
        let text = open.text.trim().to_string();
        if open.map.is_empty() {
            return Value::String(text);
        }
        let mut map = open.map;
        if !text.is_empty() {
            map.insert("#text".into(), Value::String(text));
        }
        Value::Object(map)
    }
    fn add_child(parent: &mut Open, name: String, value: Value) {
        match parent.map.get_mut(&name) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                parent.map.insert(name, value);
            }
        }
    }
    loop {
        let at = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| (at, e.to_string()))?;
        match event {
            Event::Start(e) => stack.push(open(&e).map_err(|m| (at, m))?),
            Event::Empty(e) => {
                let o = open(&e).map_err(|m| (at, m))?;
                let name = o.name.clone();
                let value = close(o);
                if let Some(parent) = stack.last_mut() {
                    add_child(parent, name, value);
                }
            }
            Event::End(_) => {
                if stack.len() < 2 {
                    return Err((at, "closing tag without an opening one".into()));
                }
                let Some(o) = stack.pop() else { break };
                let name = o.name.clone();
                let value = close(o);
                if let Some(parent) = stack.last_mut() {
                    add_child(parent, name, value);
                }
            }
            Event::Text(t) => {
                if let Some(o) = stack.last_mut() {
                    o.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(o) = stack.last_mut() {
                    o.text.push_str(&t);
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => match &*r {
                        "amp" => "&".into(),
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "quot" => "\"".into(),
                        "apos" => "'".into(),
                        other => return Err((at, format!("unknown entity &{other};"))),
                    },
                };
                if let Some(o) = stack.last_mut() {
                    o.text.push_str(&c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err((text.len(), "the document ends inside an element".into()));
    }
    Ok(Value::Object(
        stack.pop().map(|o| o.map).unwrap_or_default(),
    ))
}

fn yaml_document_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    let mut first_content_seen = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") {
            if first_content_seen {
                starts.push(i + 1);
            } else {
                starts[0] = i + 1;
                first_content_seen = true;
            }
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            first_content_seen = true;
        }
    }
    starts
}

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|p| p + 1).unwrap_or(0) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(name: &str, text: &str) -> Value {
        parse(Path::new(name), text).unwrap().remove(0).value
    }

    #[test]
    fn ini_as_conftest_converts_it() {
        // Mirrors conftest's examples/ini/grafana.ini: keys before a section dropped,
        // dotted section names kept whole, numbers and Go booleans converted.
        let v = one(
            "grafana.ini",
            "app_mode = production\n[server]\nprotocol = http\nhttp_port = 3000\n; c\n[auth.basic]\nenabled = true\n[users]\nallow_sign_up = false\nname = \"quoted\"\n",
        );
        assert_eq!(
            v,
            json!({"server": {"protocol": "http", "http_port": 3000.0}, "auth.basic": {"enabled": true}, "users": {"allow_sign_up": false, "name": "quoted"}})
        );
    }

    #[test]
    fn dotenv_and_properties_are_flat_string_maps() {
        assert_eq!(
            one(
                "sample.env",
                "# c\nAPP_NAME=test\nexport A='x y'\nB=\"l1\\nl2\"\nC=v # note\n"
            ),
            json!({"APP_NAME": "test", "A": "x y", "B": "l1\nl2", "C": "v"})
        );
        let err = parse(Path::new(".env"), "A=1\nnot an assignment\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(".env:2:1"), "{err}");
        assert_eq!(
            one(
                "sample.properties",
                "# c\n! c\nSAMPLE_VALUE=something-here\nother.value.url = https://example.com/\nkey:value\nspaced value\nlong=a\\\n   b\nesc=\\u0041\\t\n"
            ),
            json!({"SAMPLE_VALUE": "something-here", "other.value.url": "https://example.com/", "key": "value", "spaced": "value", "long": "ab", "esc": "A\t"})
        );
    }

    #[test]
    fn xml_as_mxj_shapes_it() {
        let v = one(
            "pom.xml",
            "<?xml version=\"1.0\"?>\n<project xmlns=\"http://x\"><build><plugins><plugin><artifactId>a</artifactId><version>1</version></plugin><plugin><artifactId>b &amp; c</artifactId></plugin></plugins></build><dep scope=\"test\">junit</dep><empty/></project>",
        );
        assert_eq!(
            v,
            json!({"project": {"build": {"plugins": {"plugin": [{"artifactId": "a", "version": "1"}, {"artifactId": "b & c"}]}}, "dep": {"-scope": "test", "#text": "junit"}, "empty": ""}})
        );
        let err = parse(Path::new("bad.xml"), "<a>\n<b></a>")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("bad.xml:"), "{err}");
    }

    #[test]
    fn rego_is_never_an_input_and_unsupported_kinds_are_named() {
        assert_eq!(kind_of(Path::new("policy/dockerfile.rego")), None);
        assert_eq!(kind_of(Path::new("Dockerfile.dev")), Some(Kind::Dockerfile));
        assert_eq!(kind_of(Path::new("main.tf")), Some(Kind::Hcl2));
        let err = parse(Path::new("app.cue"), "").err().unwrap().to_string();
        assert!(err.contains("no cue parser"), "{err}");
        let err = Kind::from_parser("yml").err().unwrap().to_string();
        assert!(err.contains("did you mean `--parser yaml`"), "{err}");
        assert!(
            Kind::from_parser("hocon")
                .err()
                .unwrap()
                .to_string()
                .contains("no equivalent")
        );
    }
}
