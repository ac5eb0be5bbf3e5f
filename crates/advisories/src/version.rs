//! Version ordering per ecosystem: semver for crates.io, npm and Go (with Go's
//! `v` prefix, `+incompatible` and pseudo-versions, which are semver
//! pre-releases and so order correctly), PEP 440 for PyPI, Maven's
//! `ComparableVersion`, RubyGems' `Gem::Version` and PHP's `version_compare`
//! (which Packagist's advisories are ordered by). The last three are written
//! here because no maintained crate implements them, and each is a few dozen
//! lines of its ecosystem's documented algorithm.

use std::cmp::Ordering;

use crate::Ecosystem;

/// Compares two versions of one ecosystem; `None` when either cannot be parsed.
pub fn compare(eco: Ecosystem, a: &str, b: &str) -> Option<Ordering> {
    match eco {
        Ecosystem::PyPI => Some(Pep440::parse(a)?.cmp(&Pep440::parse(b)?)),
        Ecosystem::Maven => Some(maven::compare(a, b)),
        Ecosystem::RubyGems => Some(rubygems::compare(a, b)?),
        Ecosystem::Packagist => Some(php::compare(a, b)),
        Ecosystem::CratesIo | Ecosystem::Npm | Ecosystem::Go => {
            Some(parse_semver(a)?.cmp(&parse_semver(b)?))
        }
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

/// Numbers of any length, compared as numbers without overflow.
fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Maven's `ComparableVersion` (maven-artifact): items split at `.`, `-` and
/// digit/letter transitions, `-` and transitions opening a sub-list; trailing
/// "null" items (0, "", ga, final, release) dropped; qualifiers ordered
/// alpha < beta < milestone < rc = cr < snapshot < release < sp < others.
mod maven {
    use std::cmp::Ordering;

    #[derive(Debug, Clone)]
    enum Item {
        Int(String),
        Str(String),
        List(Vec<Item>),
    }

    const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];

    fn qualifier_key(q: &str) -> String {
        match QUALIFIERS.iter().position(|k| *k == q) {
            Some(i) => i.to_string(),
            None => format!("{}-{q}", QUALIFIERS.len()),
        }
    }
    const RELEASE: &str = "5";

    fn string_item(s: &str, followed_by_digit: bool) -> Item {
        let s = match (s, followed_by_digit) {
            ("a", true) => "alpha",
            ("b", true) => "beta",
            ("m", true) => "milestone",
            ("ga" | "final" | "release", _) => "",
            ("cr", _) => "rc",
            (s, _) => s,
        };
        Item::Str(s.to_string())
    }

    fn parse_item(digit: bool, s: &str) -> Item {
        if digit {
            Item::Int(s.trim_start_matches('0').to_string())
        } else {
            string_item(s, false)
        }
    }

    fn is_null(item: &Item) -> bool {
        match item {
            Item::Int(n) => n.is_empty(),
            Item::Str(s) => s.is_empty(),
            Item::List(l) => l.is_empty(),
        }
    }

    /// Drops null items from the end, walking back past sub-lists (so
    /// `1.0-alpha` reads as `1-alpha`) and stopping at the first other item.
    fn normalize(list: &mut Vec<Item>) {
        for i in (0..list.len()).rev() {
            if is_null(&list[i]) {
                list.remove(i);
            } else if !matches!(list[i], Item::List(_)) {
                break;
            }
        }
    }

    /// Parses into nested lists (the stack holds the open sub-lists).
    fn parse(version: &str) -> Vec<Item> {
        let v = version.to_ascii_lowercase();
        let bytes = v.as_bytes();
        // Each open list as the items gathered so far; closed into its parent at the end.
        let mut stack: Vec<Vec<Item>> = vec![Vec::new()];
        let mut start = 0;
        let mut digit = false;
        let open = |stack: &mut Vec<Vec<Item>>| stack.push(Vec::new());
        for i in 0..bytes.len() {
            let c = bytes[i];
            if c == b'.' || c == b'-' {
                let top = stack.last_mut().expect("root list");
                if i == start {
                    top.push(Item::Int(String::new()));
                } else {
                    top.push(parse_item(digit, &v[start..i]));
                }
                start = i + 1;
                if c == b'-' {
                    open(&mut stack);
                }
            } else if c.is_ascii_digit() {
                if !digit && i > start {
                    stack
                        .last_mut()
                        .expect("root list")
                        .push(string_item(&v[start..i], true));
                    start = i;
                    open(&mut stack);
                }
                digit = true;
            } else {
                if digit && i > start {
                    stack
                        .last_mut()
                        .expect("root list")
                        .push(parse_item(true, &v[start..i]));
                    start = i;
                    open(&mut stack);
                }
                digit = false;
            }
        }
        if bytes.len() > start {
            stack
                .last_mut()
                .expect("root list")
                .push(parse_item(digit, &v[start..]));
        }
        while stack.len() > 1 {
            let mut list = stack.pop().expect("checked");
            normalize(&mut list);
            stack.last_mut().expect("checked").push(Item::List(list));
        }
        let mut root = stack.pop().expect("root list");
        normalize(&mut root);
        root
    }

    /// `a` compared with `b`, where `None` is the missing item of a shorter list.
    fn cmp_item(a: &Item, b: Option<&Item>) -> Ordering {
        match (a, b) {
            (Item::Int(n), None) => {
                if n.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            (Item::Int(x), Some(Item::Int(y))) => super::cmp_digits(x, y),
            (Item::Int(_), Some(_)) => Ordering::Greater,
            (Item::Str(s), None) => qualifier_key(s).as_str().cmp(RELEASE),
            (Item::Str(_), Some(Item::Int(_))) => Ordering::Less,
            (Item::Str(x), Some(Item::Str(y))) => qualifier_key(x).cmp(&qualifier_key(y)),
            (Item::Str(_), Some(Item::List(_))) => Ordering::Less,
            (Item::List(l), None) => match l.first() {
                None => Ordering::Equal,
                Some(first) => cmp_item(first, None),
            },
            (Item::List(_), Some(Item::Int(_))) => Ordering::Less,
            (Item::List(_), Some(Item::Str(_))) => Ordering::Greater,
            (Item::List(x), Some(Item::List(y))) => cmp_lists(x, y),
        }
    }

    fn cmp_lists(x: &[Item], y: &[Item]) -> Ordering {
        for i in 0..x.len().max(y.len()) {
            let ord = match (x.get(i), y.get(i)) {
                (Some(l), r) => cmp_item(l, r),
                (None, Some(r)) => cmp_item(r, None).reverse(),
                (None, None) => Ordering::Equal,
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    pub(super) fn compare(a: &str, b: &str) -> Ordering {
        cmp_lists(&parse(a), &parse(b))
    }
}

/// RubyGems' `Gem::Version#<=>`: segments are runs of digits or letters; the
/// first letter segment starts the pre-release part; trailing zeros of the
/// release and pre-release parts are dropped; a letter sorts before a number.
mod rubygems {
    use std::cmp::Ordering;

    #[derive(Debug, PartialEq)]
    enum Seg {
        Num(String),
        Str(String),
    }

    fn segments(v: &str) -> Option<Vec<Seg>> {
        let v = v.trim().replace('-', ".pre.");
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
            return None;
        }
        let mut out = Vec::new();
        let mut cur = String::new();
        for c in v.chars() {
            let boundary = c == '.'
                || cur
                    .chars()
                    .last()
                    .is_some_and(|p| p.is_ascii_digit() != c.is_ascii_digit());
            if boundary && !cur.is_empty() {
                out.push(seg(&cur));
                cur.clear();
            }
            if c != '.' {
                cur.push(c);
            }
        }
        if !cur.is_empty() {
            out.push(seg(&cur));
        }
        // Canonical: trailing zeros dropped from the release and the pre-release parts.
        let split = out
            .iter()
            .position(|s| matches!(s, Seg::Str(_)))
            .unwrap_or(out.len());
        let pre = out.split_off(split);
        let trim = |mut part: Vec<Seg>| {
            while part
                .last()
                .is_some_and(|s| matches!(s, Seg::Num(n) if n.is_empty()))
            {
                part.pop();
            }
            part
        };
        let mut canonical = trim(out);
        canonical.extend(trim(pre));
        Some(canonical)
    }

    fn seg(s: &str) -> Seg {
        if s.as_bytes()[0].is_ascii_digit() {
            Seg::Num(s.trim_start_matches('0').to_string())
        } else {
            Seg::Str(s.to_string())
        }
    }

    pub(super) fn compare(a: &str, b: &str) -> Option<Ordering> {
        let (a, b) = (segments(a)?, segments(b)?);
        let zero = Seg::Num(String::new());
        for i in 0..a.len().max(b.len()) {
            let (l, r) = (a.get(i).unwrap_or(&zero), b.get(i).unwrap_or(&zero));
            let ord = match (l, r) {
                (Seg::Num(x), Seg::Num(y)) => super::cmp_digits(x, y),
                (Seg::Str(x), Seg::Str(y)) => x.cmp(y),
                (Seg::Str(_), Seg::Num(_)) => Ordering::Less,
                (Seg::Num(_), Seg::Str(_)) => Ordering::Greater,
            };
            if ord != Ordering::Equal {
                return Some(ord);
            }
        }
        Some(Ordering::Equal)
    }
}

/// PHP's `version_compare`, which orders Packagist's releases: a leading `v`
/// dropped, `-`, `_` and `+` read as `.`, a `.` put between digits and
/// letters; numbers compare as numbers, other parts by the special forms
/// dev < alpha = a < beta = b < RC = rc < (a number) < pl = p, unknown words
/// lowest. A longer version is greater when its next part is a number.
mod php {
    use std::cmp::Ordering;

    fn canonical(v: &str) -> Vec<String> {
        let v = v.trim();
        let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
        let mut parts = Vec::new();
        let mut cur = String::new();
        for c in v.chars() {
            if matches!(c, '.' | '-' | '_' | '+') {
                if !cur.is_empty() {
                    parts.push(std::mem::take(&mut cur));
                }
                continue;
            }
            if cur
                .chars()
                .last()
                .is_some_and(|p| p.is_ascii_digit() != c.is_ascii_digit())
            {
                parts.push(std::mem::take(&mut cur));
            }
            cur.push(c);
        }
        if !cur.is_empty() {
            parts.push(cur);
        }
        parts
    }

    fn special(part: &str) -> i32 {
        match part {
            "dev" => 0,
            "alpha" | "a" => 1,
            "beta" | "b" => 2,
            "RC" | "rc" => 3,
            "#" => 4,
            "pl" | "p" => 5,
            _ => -6,
        }
    }

    fn is_num(p: &str) -> bool {
        p.bytes().all(|b| b.is_ascii_digit())
    }

    fn cmp_part(a: &str, b: &str) -> Ordering {
        match (is_num(a), is_num(b)) {
            (true, true) => super::cmp_digits(a, b),
            (true, false) => special("#").cmp(&special(b)),
            (false, true) => special(a).cmp(&special("#")),
            (false, false) => special(a).cmp(&special(b)),
        }
    }

    pub(super) fn compare(a: &str, b: &str) -> Ordering {
        let (a, b) = (canonical(a), canonical(b));
        for (l, r) in a.iter().zip(&b) {
            let ord = cmp_part(l, r);
            if ord != Ordering::Equal {
                return ord;
            }
        }
        // PHP: the rest of the longer one decides, a number being above "#".
        match a.len().cmp(&b.len()) {
            Ordering::Equal => Ordering::Equal,
            Ordering::Greater => rest(&a[b.len()]),
            Ordering::Less => rest(&b[a.len()]).reverse(),
        }
    }

    fn rest(part: &str) -> Ordering {
        if is_num(part) {
            Ordering::Greater
        } else {
            cmp_part(part, "#")
        }
    }
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
    fn maven_ordering_as_comparable_version() {
        // Maven's own ComparableVersionTest sequence (a representative part).
        let ordered = [
            "1-alpha2snapshot",
            "1-alpha2",
            "1-alpha-123",
            "1-beta-2",
            "1-beta123",
            "1-m2",
            "1-m11",
            "1-rc",
            "1-cr2",
            "1-rc123",
            "1-SNAPSHOT",
            "1",
            "1-sp",
            "1-sp2",
            "1-sp123",
            "1-abc",
            "1-def",
            "1-pom-1",
            "1-1-snapshot",
            "1-1",
            "1-2",
            "1-123",
            "2.0.0-beta",
            "2.0",
            "2.1.0-jre",
            "31.1-jre",
        ];
        for w in ordered.windows(2) {
            lt(Ecosystem::Maven, w[0], w[1]);
        }
        for (a, b) in [
            ("1", "1.0"),
            ("1.0.0", "1-ga"),
            ("1-final", "1"),
            ("1cr", "1rc"),
            ("1.0-alpha", "1-alpha"),
        ] {
            assert_eq!(
                compare(Ecosystem::Maven, a, b),
                Some(Ordering::Equal),
                "{a} = {b}"
            );
        }
    }

    #[test]
    fn rubygems_ordering_as_gem_version() {
        for w in [
            "1.0.a",
            "1.0.b1",
            "1.0.rc1",
            "1.0",
            "1.0.1",
            "1.9.3",
            "1.10.0",
            "2.0.0.pre",
            "2.0.0",
        ]
        .windows(2)
        {
            lt(Ecosystem::RubyGems, w[0], w[1]);
        }
        assert_eq!(
            compare(Ecosystem::RubyGems, "1.0.0", "1"),
            Some(Ordering::Equal)
        );
        assert_eq!(compare(Ecosystem::RubyGems, "1.0 beta", "1"), None);
    }

    #[test]
    fn packagist_ordering_as_php_version_compare() {
        for w in [
            "1.0.0-dev",
            "1.0.0-alpha1",
            "1.0.0-beta2",
            "1.0.0-RC1",
            "1.0.0",
            "1.0.0-pl1",
            "1.0.1",
            "v1.10.0",
            "5.4.2",
        ]
        .windows(2)
        {
            lt(Ecosystem::Packagist, w[0], w[1]);
        }
        // PHP: version_compare('1.0', '1.0.0') is -1.
        lt(Ecosystem::Packagist, "1.0", "1.0.0");
        assert_eq!(
            compare(Ecosystem::Packagist, "v2.3", "2.3"),
            Some(Ordering::Equal)
        );
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
