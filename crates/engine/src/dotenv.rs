//! `.secrets` / `.vars` / `.env` files in dotenv format, read the way act reads
//! them (godotenv): `NAME=value`, optional `export `, `#` comments, single quotes
//! literal, double quotes with `\n` escapes and spanning lines.

/// Parses dotenv text into ordered pairs.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut line_no = 0usize;
    while !rest.is_empty() {
        let (line, tail) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        line_no += 1;
        rest = tail;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let Some((key, value)) = trimmed.split_once(['=', ':']) else {
            return Err(format!(
                "line {line_no}: expected NAME=value, got {trimmed:?}"
            ));
        };
        let key = key.trim().to_string();
        let value = value.trim_start();
        let value = if let Some(v) = value.strip_prefix('"') {
            // A double-quoted value may continue on the following lines.
            let mut buf = v.to_string();
            loop {
                if let Some(end) = closing_quote(&buf) {
                    buf.truncate(end);
                    break;
                }
                if rest.is_empty() {
                    return Err(format!(
                        "line {line_no}: unterminated double quote for {key}"
                    ));
                }
                let (next, tail) = match rest.find('\n') {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (rest, ""),
                };
                buf.push('\n');
                buf.push_str(next);
                rest = tail;
                line_no += 1;
            }
            unescape_double(&buf)
        } else if let Some(v) = value.strip_prefix('\'') {
            match v.find('\'') {
                Some(end) => v[..end].to_string(),
                None => {
                    return Err(format!(
                        "line {line_no}: unterminated single quote for {key}"
                    ));
                }
            }
        } else {
            // Unquoted: an inline comment starts at " #".
            let v = match value.find(" #") {
                Some(i) => &value[..i],
                None => value,
            };
            v.trim_end().to_string()
        };
        out.push((key, value));
    }
    Ok(out)
}

fn closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_act_secret_files() {
        let kv = parse(
            "# c\nMY_SECRET=top-secret\nMULTILINE_SECRET=\"foo\\nbar\\nbaz\"\nJSON_SECRET={\"foo\": \"bar\"}\nexport A='x y' \nB=\"l1\nl2\"\n",
        )
        .unwrap();
        assert_eq!(kv[0], ("MY_SECRET".into(), "top-secret".into()));
        assert_eq!(kv[1].1, "foo\nbar\nbaz");
        assert_eq!(kv[2].1, "{\"foo\": \"bar\"}");
        assert_eq!(kv[3], ("A".into(), "x y".into()));
        assert_eq!(kv[4].1, "l1\nl2");
    }
}
