//! Version ordering per ecosystem: semver for crates.io, npm and Go (with Go's
//! `v` prefix, `+incompatible` and pseudo-versions, which are semver
//! pre-releases and so order correctly), PEP 440 for PyPI.

use std::cmp::Ordering;

use crate::Ecosystem;

/// Compares two versions of one ecosystem; `None` when either cannot be parsed.
pub fn compare(eco: Ecosystem, a: &str, b: &str) -> Option<Ordering> {
    match eco {
        Ecosystem::PyPI => Some(Pep440::parse(a)?.cmp(&Pep440::parse(b)?)),
        _ => Some(parse_semver(a)?.cmp(&parse_semver(b)?)),
    }
}

/// Lenient semver: a leading `v`, `+incompatible`, and missing minor/patch
/// components (`1.2`) are accepted, as lock files and advisories contain them.
pub fn parse_semver(v: &str) -> Option<semver::Version> {
    let v = v.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let v = v.strip_suffix("+incompatible").unwrap_or(v);
    if let Ok(parsed) = semver::Version::parse(v) {
        return Some(parsed);
    }
    // Pad `1` / `1.2` (optionally followed by a pre-release or build part).
    let split = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
        return None;
    }
    let mut padded = parts.join(".");
    for _ in parts.len()..3 {
        padded.push_str(".0");
    }
    semver::Version::parse(&(padded + rest)).ok()
}

/// A PEP 440 version. Written here because the Rust crates that implement it
/// (pep440_rs) bring a large dependency tree for what is a 100-line ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pep440 {
    epoch: u64,
    release: Vec<u64>,
    /// (kind 0=a 1=b 2=rc, number)
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalPart {
    // Per PEP 440, alphanumeric segments sort before numeric ones.
    Str(String),
    Num(u64),
}

impl Pep440 {
    pub fn parse(input: &str) -> Option<Self> {
        let s = input.trim().to_ascii_lowercase();
        let s = s.strip_prefix('v').unwrap_or(&s);
        let (s, local) = match s.split_once('+') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let (epoch, s) = match s.split_once('!') {
            Some((e, r)) => (e.parse().ok()?, r),
            None => (0, s),
        };
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut release = Vec::new();
        loop {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return None;
            }
            release.push(s[start..i].parse().ok()?);
            if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                i += 1;
            } else {
                break;
            }
        }
        let mut rest = &s[i..];
        let mut pre = None;
        let mut post = None;
        let mut dev = None;
        let take_num = |r: &str| -> (u64, usize) {
            let r2 = r.trim_start_matches(['.', '-', '_']);
            let skipped = r.len() - r2.len();
            let digits = r2.bytes().take_while(|b| b.is_ascii_digit()).count();
            (r2[..digits].parse().unwrap_or(0), skipped + digits)
        };
        while !rest.is_empty() {
            let r = rest.trim_start_matches(['.', '-', '_']);
            let sep = rest.len() - r.len();
            let labels: [(&str, u8); 8] = [
                ("alpha", 0),
                ("beta", 1),
                ("preview", 2),
                ("pre", 2),
                ("rc", 2),
                ("c", 2),
                ("a", 0),
                ("b", 1),
            ];
            if let Some((label, kind)) = labels.iter().find(|(l, _)| r.starts_with(l)) {
                let (n, used) = take_num(&r[label.len()..]);
                pre = Some((*kind, n));
                rest = &r[label.len() + used..];
            } else if let Some(l) = ["post", "rev", "r"].iter().find(|l| r.starts_with(**l)) {
                let (n, used) = take_num(&r[l.len()..]);
                post = Some(n);
                rest = &r[l.len() + used..];
            } else if let Some(r2) = r.strip_prefix("dev") {
                let (n, used) = take_num(r2);
                dev = Some(n);
                rest = &r2[used..];
            } else if sep == 1
                && rest.starts_with('-')
                && r.bytes().next().is_some_and(|b| b.is_ascii_digit())
            {
                // `1.0-1` is an implicit post-release.
                let (n, used) = take_num(r);
                post = Some(n);
                rest = &r[used..];
            } else {
                return None;
            }
        }
        let local = local
            .map(|l| {
                l.split(['.', '-', '_'])
                    .map(|p| {
                        p.parse()
                            .map(LocalPart::Num)
                            .unwrap_or_else(|_| LocalPart::Str(p.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Pep440 {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    /// The sort key of PEP 440's ordering: a dev release of a final version
    /// sorts before its pre-releases; post-releases after the final.
    fn key(&self) -> SortKey {
        let mut release = self.release.clone();
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        let pre = match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => (-1, 0, 0),
            (Some((k, n)), _, _) => (0, k as u64, n),
            (None, _, _) => (1, 0, 0),
        };
        let post = match self.post {
            None => (-1, 0),
            Some(n) => (0, n),
        };
        let dev = match self.dev {
            None => (1, 0),
            Some(n) => (0, n),
        };
        (self.epoch, release, pre, post, dev)
    }
}

/// (epoch, release without trailing zeros, pre, post, dev).
type SortKey = (u64, Vec<u64>, (i8, u64, u64), (i8, u64), (i8, u64));

impl Ord for Pep440 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key()
            .cmp(&other.key())
            .then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt(eco: Ecosystem, a: &str, b: &str) {
        assert_eq!(compare(eco, a, b), Some(Ordering::Less), "{a} < {b}");
        assert_eq!(compare(eco, b, a), Some(Ordering::Greater), "{b} > {a}");
    }

    #[test]
    fn pep440_ordering() {
        let chain = [
            "1.0.dev1",
            "1.0a1",
            "1.0a2.dev1",
            "1.0a2",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+local",
            "1.0.post1",
            "1.1",
            "1.10",
            "1!0.1",
        ];
        for w in chain.windows(2) {
            lt(Ecosystem::PyPI, w[0], w[1]);
        }
        assert_eq!(
            compare(Ecosystem::PyPI, "1.0", "1.0.0"),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(Ecosystem::PyPI, "1.0RC1", "1.0c1"),
            Some(Ordering::Equal)
        );
        assert!(Pep440::parse("not a version").is_none());
    }

    #[test]
    fn semver_and_go_ordering() {
        lt(Ecosystem::Npm, "1.2.3-beta.1", "1.2.3");
        lt(Ecosystem::CratesIo, "0.9.9", "0.10.0");
        lt(
            Ecosystem::Go,
            "v0.0.0-20200101000000-abcdefabcdef",
            "v0.0.1",
        );
        lt(Ecosystem::Go, "v1.2.0", "v1.10.0");
        lt(Ecosystem::Go, "v2.0.0+incompatible", "v2.0.1");
        lt(Ecosystem::Npm, "1.2", "1.2.1");
    }
}
