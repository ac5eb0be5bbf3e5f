//! The files a step writes to talk back: `GITHUB_ENV` / `GITHUB_OUTPUT`
//! (`NAME=value` or `NAME<<DELIMITER` heredocs) and `GITHUB_PATH` (one directory
//! a line).

/// Parses `NAME=value` lines and `NAME<<EOF ... EOF` blocks, as the runner's
/// `SetEnvFileCommand` does: whichever of `=` and `<<` comes first decides.
pub fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut line_no = 0;
    while let Some(line) = lines.next() {
        line_no += 1;
        if line.is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let name = &line[..e];
                if name.is_empty() {
                    return Err(format!("line {line_no}: empty name in {line:?}"));
                }
                out.push((name.to_string(), line[e + 1..].to_string()));
            }
            (_, Some(h)) => {
                let name = &line[..h];
                let delimiter = &line[h + 2..];
                if name.is_empty() || delimiter.is_empty() {
                    return Err(format!(
                        "line {line_no}: invalid heredoc {line:?}: expected NAME<<DELIMITER"
                    ));
                }
                let mut value: Vec<&str> = Vec::new();
                let mut closed = false;
                for l in lines.by_ref() {
                    line_no += 1;
                    if l == delimiter {
                        closed = true;
                        break;
                    }
                    value.push(l);
                }
                if !closed {
                    return Err(format!(
                        "matching delimiter {delimiter:?} not found for {name:?}"
                    ));
                }
                out.push((name.to_string(), value.join("\n")));
            }
            _ => {
                return Err(format!(
                    "line {line_no}: invalid format {line:?}: expected NAME=value or NAME<<DELIMITER"
                ));
            }
        }
    }
    Ok(out)
}

/// Directories from a `GITHUB_PATH` file, in file order.
pub fn parse_paths(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_and_heredoc() {
        let kv = parse_key_values("A=1\nB<<EOF\nx=y\nsecond\nEOF\nC=a=b\r\nD<<X\nX\n").unwrap();
        assert_eq!(
            kv,
            [
                ("A".into(), "1".into()),
                ("B".into(), "x=y\nsecond".into()),
                ("C".into(), "a=b".into()),
                ("D".into(), "".into()),
            ]
        );
        assert!(parse_key_values("B<<EOF\nnever closed\n").is_err());
        assert!(parse_key_values("garbage\n").is_err());
    }
}
