//! "Did you mean" for calls to functions Rego does not have. regorus keeps its
//! builtin table private, so the names are listed here (OPA's builtins that
//! regorus implements with the features hangar enables).

pub const BUILTINS: &[&str] = &[
    "abs",
    "all",
    "any",
    "array.concat",
    "array.reverse",
    "array.slice",
    "base64.decode",
    "base64.encode",
    "base64.is_valid",
    "base64url.decode",
    "base64url.encode",
    "base64url.encode_no_pad",
    "bits.and",
    "bits.lsh",
    "bits.negate",
    "bits.or",
    "bits.rsh",
    "bits.xor",
    "ceil",
    "concat",
    "contains",
    "count",
    "endswith",
    "floor",
    "format_int",
    "glob.match",
    "glob.quote_meta",
    "hex.decode",
    "hex.encode",
    "indexof",
    "indexof_n",
    "intersection",
    "is_array",
    "is_boolean",
    "is_null",
    "is_number",
    "is_object",
    "is_set",
    "is_string",
    "json.filter",
    "json.is_valid",
    "json.marshal",
    "json.remove",
    "json.unmarshal",
    "lower",
    "max",
    "min",
    "numbers.range",
    "numbers.range_step",
    "object.filter",
    "object.get",
    "object.keys",
    "object.remove",
    "object.subset",
    "object.union",
    "object.union_n",
    "opa.runtime",
    "print",
    "product",
    "regex.find_all_string_submatch_n",
    "regex.find_n",
    "regex.is_valid",
    "regex.match",
    "regex.replace",
    "regex.split",
    "regex.template_match",
    "replace",
    "round",
    "semver.compare",
    "semver.is_valid",
    "sort",
    "split",
    "sprintf",
    "startswith",
    "strings.any_prefix_match",
    "strings.any_suffix_match",
    "strings.count",
    "strings.replace_n",
    "strings.reverse",
    "substring",
    "sum",
    "to_number",
    "trim",
    "trim_left",
    "trim_prefix",
    "trim_right",
    "trim_space",
    "trim_suffix",
    "type_name",
    "union",
    "upper",
];

/// The closest builtin to `name`, if one is close enough to be a likely typo.
/// Separators are ignored first (`starts_with` -> `startswith`), then the
/// workspace's edit-distance "did you mean" decides.
pub fn closest(name: &str) -> Option<&'static str> {
    let squash = |s: &str| s.replace(['_', '.'], "").to_ascii_lowercase();
    let target = squash(name);
    if let Some(exact) = BUILTINS.iter().find(|b| squash(b) == target) {
        return Some(exact);
    }
    hangar_diag::did_you_mean(name, BUILTINS.iter().copied())
}

#[cfg(test)]
mod tests {
    #[test]
    fn suggestions() {
        assert_eq!(super::closest("starts_with"), Some("startswith"));
        assert_eq!(super::closest("ends_with"), Some("endswith"));
        assert_eq!(super::closest("sprintff"), Some("sprintf"));
        assert_eq!(super::closest("frobnicate_widgets"), None);
    }
}
