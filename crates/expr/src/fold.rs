//! Case-insensitive comparison the way GitHub does it (.NET `OrdinalIgnoreCase`):
//! both sides are upper-cased character by character with the invariant simple
//! mapping, then compared by code point.
//!
//! Two details matter for conformance: the fold is to *upper* case (so `'a' < '['`
//! holds exactly as `'A' < '['` does), and non-ASCII letters never fold onto ASCII
//! ones (`ı` is not `I`, `ſ` is not `S`), while `ς`, `σ` and `Σ` all meet.

use std::cmp::Ordering;
use std::hash::Hasher;

/// The invariant upper-case of one character, or the character itself when the
/// mapping is not one-to-one (`ß` → `SS`) or would cross into ASCII.
#[inline]
pub(crate) fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) if !u.is_ascii() => u,
        _ => c,
    }
}

/// Case-insensitive equality with an allocation-free ASCII fast path.
#[inline]
pub fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    let mut left = a.chars().map(fold_char);
    let mut right = b.chars().map(fold_char);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// Case-insensitive ordinal ordering.
pub fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        let left = a.bytes().map(|b| b.to_ascii_uppercase());
        let right = b.bytes().map(|b| b.to_ascii_uppercase());
        return left.cmp(right);
    }
    a.chars().map(fold_char).cmp(b.chars().map(fold_char))
}

/// `needle` occurs in `haystack`, ignoring case.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle.as_bytes());
        return h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    let h: Vec<char> = haystack.chars().map(fold_char).collect();
    let n: Vec<char> = needle.chars().map(fold_char).collect();
    n.len() <= h.len() && h.windows(n.len()).any(|w| w == n.as_slice())
}

/// `haystack` starts with `prefix`, ignoring case.
pub fn starts_with_ignore_case(haystack: &str, prefix: &str) -> bool {
    let mut h = haystack.chars().map(fold_char);
    prefix.chars().map(fold_char).all(|p| h.next() == Some(p))
}

/// `haystack` ends with `suffix`, ignoring case.
pub fn ends_with_ignore_case(haystack: &str, suffix: &str) -> bool {
    let mut h = haystack.chars().rev().map(fold_char);
    suffix
        .chars()
        .rev()
        .map(fold_char)
        .all(|p| h.next() == Some(p))
}

/// Feeds the folded form of `s` to a hasher, so that keys equal under
/// [`eq_ignore_case`] hash alike, without allocating.
pub(crate) fn hash_folded<H: Hasher>(s: &str, state: &mut H) {
    let mut buf = [0u8; 64];
    if s.is_ascii() {
        for chunk in s.as_bytes().chunks(buf.len()) {
            for (b, c) in buf.iter_mut().zip(chunk) {
                *b = c.to_ascii_uppercase();
            }
            state.write(&buf[..chunk.len()]);
        }
        state.write_u8(0xff);
        return;
    }
    let mut len = 0;
    for c in s.chars() {
        let f = fold_char(c);
        if len + 4 > buf.len() {
            state.write(&buf[..len]);
            len = 0;
        }
        len += f.encode_utf8(&mut buf[len..]).len();
    }
    state.write(&buf[..len]);
    state.write_u8(0xff);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greek_sigmas_meet_but_turkish_i_does_not() {
        assert!(eq_ignore_case("ς", "Σ"));
        assert!(eq_ignore_case("σ", "ς"));
        assert!(!eq_ignore_case("ı", "I"));
        assert!(!eq_ignore_case("i", "İ"));
        assert!(eq_ignore_case("Straße", "STRAßE"));
    }

    #[test]
    fn ordering_folds_to_upper_case() {
        assert_eq!(cmp_ignore_case("a", "["), Ordering::Less);
        assert_eq!(cmp_ignore_case("abc", "ABD"), Ordering::Less);
        assert_eq!(cmp_ignore_case("ı", "I"), Ordering::Greater);
    }

    #[test]
    fn substring_helpers() {
        assert!(contains_ignore_case("abCdEf", "cDe"));
        assert!(contains_ignore_case("x", ""));
        assert!(!contains_ignore_case("ab", "abc"));
        assert!(contains_ignore_case("ünïcödé", "ÏCÖ"));
        assert!(starts_with_ignore_case("Σ_asdf", "ς"));
        assert!(!starts_with_ignore_case("ab", "abc"));
        assert!(ends_with_ignore_case("asdf_ü", "Ü"));
        assert!(!ends_with_ignore_case("asdf_i", "İ"));
    }
}
