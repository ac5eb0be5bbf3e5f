//! Dockerfiles parsed to the JSON conftest gives policies: a flat list of
//! instructions, each
//! `{"Cmd", "SubCmd", "JSON", "Original", "StartLine", "EndLine", "Flags", "Value", "Stage"}`:
//! `Cmd` lower-cased (`from`, `run`, ...), `Flags` the leading `--x=y`
//! options, `Value` the arguments (JSON form: the array's strings; shell form
//! of RUN/CMD/ENTRYPOINT/SHELL: one string; ENV/LABEL/ARG `k=v`: `[k, v, ...]`;
//! others: whitespace-split words), `Stage` the 0-based index of the `FROM`
//! stage the instruction belongs to. Comment lines above an instruction come
//! before it as `{"Cmd": "comment", "Value": [text]}`, as conftest emits them
//! (parser directives such as `# syntax=` are not comments). `SubCmd` is the instruction after ONBUILD.
//! Written here (no Rust crate reproduces BuildKit's parser shape) and kept to
//! what policies read.

use serde_json::{Value, json};

pub fn parse(text: &str) -> Value {
    let mut out = Vec::new();
    let mut stage: i64 = -1;
    let mut escape = '\\';
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut seen_instruction = false;
    // Comments waiting for the instruction they precede: (text, line).
    let mut pending: Vec<(String, usize)> = Vec::new();
    while i < lines.len() {
        let start = i;
        let raw = lines[i].trim();
        i += 1;
        if raw.is_empty() {
            continue;
        }
        if let Some(comment) = raw.strip_prefix('#') {
            let text = comment.trim();
            // Parser directives are only honoured before the first instruction.
            if !seen_instruction && pending.is_empty() {
                if let Some(d) = text.strip_prefix("escape=") {
                    escape = d.trim().chars().next().unwrap_or('\\');
                    continue;
                }
                if text.starts_with("syntax=") || text.starts_with("check=") {
                    continue;
                }
            }
            // As BuildKit's parser keeps them: the comment lines above an
            // instruction, an empty `#` starting the block anew.
            if text.is_empty() {
                pending.clear();
            } else {
                pending.push((text.to_string(), start + 1));
            }
            continue;
        }
        seen_instruction = true;
        // Join continuation lines; comment lines inside a continuation are dropped.
        let mut logical = String::new();
        let mut original = String::new();
        let mut cur = raw.to_string();
        loop {
            original.push_str(&cur);
            if let Some(stripped) = cur.trim_end().strip_suffix(escape) {
                logical.push_str(stripped);
                logical.push(' ');
                original.push('\n');
                while i < lines.len()
                    && (lines[i].trim_start().starts_with('#') || lines[i].trim().is_empty())
                {
                    i += 1;
                }
                if i >= lines.len() {
                    break;
                }
                cur = lines[i].trim().to_string();
                i += 1;
            } else {
                logical.push_str(&cur);
                break;
            }
        }
        let end = i;
        let (cmd, rest) = split_word(logical.trim());
        let cmd = cmd.to_ascii_lowercase();
        let (sub_cmd, rest) = if cmd == "onbuild" {
            let (s, r) = split_word(rest);
            (s.to_ascii_lowercase(), r)
        } else {
            (String::new(), rest)
        };
        let effective = if sub_cmd.is_empty() {
            cmd.as_str()
        } else {
            sub_cmd.as_str()
        };
        let (flags, rest) = take_flags(rest);
        if cmd == "from" {
            stage += 1;
        }
        let (is_json, value) = values(effective, rest);
        // conftest emits them as `comment` commands before the instruction,
        // in the instruction's stage.
        for (text, line) in pending.drain(..) {
            out.push(json!({
                "Cmd": "comment",
                "SubCmd": "",
                "JSON": false,
                "Original": format!("# {text}"),
                "StartLine": line,
                "EndLine": line,
                "Flags": [],
                "Value": [text],
                "Stage": stage.max(0),
            }));
        }
        out.push(json!({
            "Cmd": cmd,
            "SubCmd": sub_cmd,
            "JSON": is_json,
            "Original": original,
            "StartLine": start + 1,
            "EndLine": end,
            "Flags": flags,
            "Value": value,
            "Stage": stage.max(0),
        }));
    }
    Value::Array(out)
}

fn split_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(at) => (&s[..at], s[at..].trim_start()),
        None => (s, ""),
    }
}

fn take_flags(mut rest: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    while rest.starts_with("--") {
        let (flag, r) = split_word(rest);
        flags.push(flag.to_string());
        rest = r;
    }
    (flags, rest)
}

fn values(cmd: &str, rest: &str) -> (bool, Vec<String>) {
    let json_capable = matches!(
        cmd,
        "run" | "cmd" | "entrypoint" | "shell" | "copy" | "add" | "volume"
    );
    if json_capable
        && rest.starts_with('[')
        && let Ok(items) = serde_json::from_str::<Vec<String>>(rest)
    {
        return (true, items);
    }
    let words = || rest.split_whitespace().map(str::to_string).collect();
    match cmd {
        "run" | "cmd" | "entrypoint" | "shell" => (false, vec![rest.to_string()]),
        "env" | "label" | "arg" => {
            if rest.contains('=') {
                let mut v = Vec::new();
                for word in shell_words(rest) {
                    match word.split_once('=') {
                        Some((k, val)) => {
                            v.push(k.to_string());
                            v.push(val.to_string());
                        }
                        None => v.push(word),
                    }
                }
                (false, v)
            } else {
                // Legacy `ENV KEY value with spaces`.
                let (k, v) = split_word(rest);
                (
                    false,
                    if v.is_empty() {
                        vec![k.to_string()]
                    } else {
                        vec![k.to_string(), v.to_string()]
                    },
                )
            }
        }
        _ => (false, words()),
    }
}

/// Splits on whitespace outside double or single quotes, removing the quotes.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() || any {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if !cur.is_empty() || any {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conftest_shape() {
        let doc = parse(
            "# syntax=docker/dockerfile:1\nFROM python:3.10-slim AS build\nRUN apt-get update && \\\n    # comment\n    apt-get install -y curl\nCOPY --from=build /a /b\nENV A=1 B=\"two words\"\nCMD [\"python\", \"-m\", \"app\"]\nFROM scratch\nUSER 1000\n",
        );
        let cmds = doc.as_array().unwrap();
        assert_eq!(cmds[0]["Cmd"], "from");
        assert_eq!(cmds[0]["Value"], json!(["python:3.10-slim", "AS", "build"]));
        assert_eq!(
            cmds[1]["Value"],
            json!(["apt-get update &&  apt-get install -y curl"])
        );
        assert_eq!(
            (cmds[1]["StartLine"].as_u64(), cmds[1]["EndLine"].as_u64()),
            (Some(3), Some(5))
        );
        assert_eq!(cmds[2]["Flags"], json!(["--from=build"]));
        assert_eq!(cmds[3]["Value"], json!(["A", "1", "B", "two words"]));
        assert_eq!(cmds[4]["JSON"], true);
        assert_eq!(cmds[4]["Value"], json!(["python", "-m", "app"]));
        assert_eq!(cmds[6]["Stage"], 1);
        assert_eq!(cmds[6]["Cmd"], "user");
    }

    #[test]
    fn comments_come_before_their_instruction_as_conftest_emits_them() {
        let doc = parse(
            "# syntax=docker/dockerfile:1\nFROM alpine AS a\n# runtime image\n# keep it small\nFROM scratch\n#\n# only this\nUSER 1\n# trailing\n",
        );
        let got: Vec<(String, serde_json::Value, i64)> = doc
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["Cmd"].as_str().unwrap().to_string(),
                    c["Value"].clone(),
                    c["Stage"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("from".into(), json!(["alpine", "AS", "a"]), 0),
                ("comment".into(), json!(["runtime image"]), 1),
                ("comment".into(), json!(["keep it small"]), 1),
                ("from".into(), json!(["scratch"]), 1),
                ("comment".into(), json!(["only this"]), 1),
                ("user".into(), json!(["1"]), 1),
            ]
        );
    }
}
