//! The tricky parts of the language, pinned beyond the shared corpus.

use hangar_expr::{
    Contexts, DefaultHost, Function, Host, StatusFunction, SyntaxErrorKind, Template, Value,
    evaluate, is_single_expression, parse, single_expression_source,
};
use serde_json::json;

fn contexts() -> Contexts {
    Contexts::from_json(&json!({
        "github": {
            "ref": "refs/heads/main",
            "event_name": "push",
            "event": {"commits": [
                {"message": "fix: a", "author": {"name": "Ann"}},
                {"message": "feat: b", "author": {"name": "Bob"}},
                {"message": "chore", "author": null}
            ]}
        },
        "matrix": {"os": "Linux", "versions": [1, 2, 3]},
        "steps": {"build": {"outputs": {"json": "{\"a\": [1, 2]}"}, "outcome": "success"}},
        "env": {"EMPTY": ""}
    }))
}

fn eval(src: &str) -> Value {
    evaluate(src, &contexts(), &DefaultHost).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn eval_json(src: &str) -> serde_json::Value {
    eval(src).to_json()
}

#[test]
fn and_or_return_operands_not_booleans() {
    assert_eq!(eval("env.EMPTY || 'fallback'"), Value::from("fallback"));
    assert_eq!(eval("matrix.os && github.event_name"), Value::from("push"));
    assert_eq!(eval("env.EMPTY && 'never'"), Value::from(""));
    assert_eq!(eval("env.missing || null"), Value::Null);
}

#[test]
fn and_or_short_circuit_errors_on_the_other_side() {
    // The right side would fail (bad format string) if evaluated.
    assert_eq!(eval("false && format('{0}')"), Value::Bool(false));
    assert_eq!(eval("true || format('{0}')"), Value::Bool(true));
    assert!(evaluate("true && format('{0}')", &contexts(), &DefaultHost).is_err());
}

#[test]
fn comparisons_coerce_and_ignore_case() {
    assert_eq!(eval("matrix.os == 'LINUX'"), Value::Bool(true));
    assert_eq!(eval("'10' > 9"), Value::Bool(true));
    assert_eq!(eval("'abc' < 'ABD'"), Value::Bool(true));
    assert_eq!(eval("NaN < 1 || NaN >= 1"), Value::Bool(false));
    assert_eq!(eval("github.event == github.event"), Value::Bool(true));
    assert_eq!(eval("fromJSON('{}') == fromJSON('{}')"), Value::Bool(false));
    assert_eq!(eval("null == ''"), Value::Bool(true));
}

#[test]
fn property_and_context_names_ignore_case() {
    assert_eq!(eval("GITHUB.Event_Name"), Value::from("push"));
    assert_eq!(eval("github['EVENT_NAME']"), Value::from("push"));
    assert_eq!(eval("matrix.versions[1]"), Value::Number(2.0));
    assert_eq!(eval("matrix.versions['2']"), Value::Number(3.0));
    assert_eq!(eval("matrix.versions[7]"), Value::Null);
    assert_eq!(eval("nosuch.thing.deeper"), Value::Null);
}

#[test]
fn filters_map_over_items_and_skip_misses() {
    assert_eq!(
        eval_json("github.event.commits.*.message"),
        json!(["fix: a", "feat: b", "chore"])
    );
    // The third author is null: it has no name, so it is skipped.
    assert_eq!(
        eval_json("github.event.commits.*.author.name"),
        json!(["Ann", "Bob"])
    );
    assert_eq!(
        eval_json("github.event.commits[*].author"),
        json!([{"name": "Ann"}, {"name": "Bob"}, null])
    );
    assert_eq!(eval_json("matrix.*"), json!(["Linux", [1, 2, 3]]));
    // A filter on a filter flattens one level.
    assert_eq!(eval_json("matrix.*.*"), json!([1, 2, 3]));
    assert_eq!(
        eval("contains(github.event.commits.*.message, 'FEAT: B')"),
        Value::Bool(true)
    );
    assert_eq!(
        eval("join(github.event.commits.*.author.name, ' & ')"),
        Value::from("Ann & Bob")
    );
    assert_eq!(eval_json("env.EMPTY.*"), json!([]));
}

#[test]
fn format_escapes_and_bad_indices() {
    assert_eq!(
        eval("format('{{{0}}} {1}', 'a', 2.50)"),
        Value::from("{a} 2.5")
    );
    let err = evaluate("format('{0} {2}', 1, 2)", &contexts(), &DefaultHost).unwrap_err();
    assert!(err.message().contains("references more arguments"), "{err}");
    let err = evaluate("format('{a}', 1)", &contexts(), &DefaultHost).unwrap_err();
    assert!(err.message().contains("is invalid"), "{err}");
    assert_eq!(err.offset(), 0);
}

#[test]
fn json_round_trips() {
    assert_eq!(
        eval_json("fromJSON(steps.build.outputs.json).a[1]"),
        json!(2)
    );
    assert_eq!(
        eval("toJSON(matrix.versions)"),
        Value::from("[\n  1,\n  2,\n  3\n]")
    );
    assert_eq!(eval("toJSON('a\"b')"), Value::from("\"a\\\"b\""));
    assert!(evaluate("fromJSON('{oops')", &contexts(), &DefaultHost).is_err());
}

#[test]
fn numbers_print_as_github_prints_them() {
    assert_eq!(
        eval("format('{0}|{1}|{2}|{3}', 1.0, 0.1, 1e21, -0)"),
        Value::from("1|0.1|1E+21|0")
    );
    assert_eq!(eval("0xff"), Value::Number(255.0));
    assert_eq!(
        eval("format('{0}', 123456789012.5)"),
        Value::from("123456789012.5")
    );
}

struct FailedHost;

impl Host for FailedHost {
    fn status(&self, f: StatusFunction) -> bool {
        matches!(f, StatusFunction::Failure | StatusFunction::Always)
    }

    fn status_of(&self, f: StatusFunction, jobs: &[String]) -> bool {
        // Only the job named `broken` failed.
        let failed = jobs.iter().any(|j| j == "broken");
        match f {
            StatusFunction::Success => !failed,
            StatusFunction::Failure => failed,
            other => self.status(other),
        }
    }

    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        Ok(format!("hash:{}", patterns.join("+")))
    }
}

#[test]
fn job_status_functions_take_job_names() {
    let ctx = contexts();
    let check = |src: &str| parse(src).unwrap().eval(&ctx, &FailedHost).unwrap();
    assert_eq!(check("success('fine', 'also-fine')"), Value::Bool(true));
    assert_eq!(check("failure('broken')"), Value::Bool(true));
    assert_eq!(check("success('broken')"), Value::Bool(false));
    assert!(parse("always(1)").is_err());
    assert!(parse("cancelled('x')").is_err());
}

#[test]
fn status_functions_and_hash_files_ask_the_host() {
    let ctx = contexts();
    let check = |src: &str| parse(src).unwrap().eval(&ctx, &FailedHost).unwrap();
    assert_eq!(check("success()"), Value::Bool(false));
    assert_eq!(check("FAILURE() && always()"), Value::Bool(true));
    assert_eq!(
        check("hashFiles('**/*.lock', matrix.os)"),
        Value::from("hash:**/*.lock+Linux")
    );
    let err = parse("hashFiles('x')")
        .unwrap()
        .eval(&ctx, &DefaultHost)
        .unwrap_err();
    assert!(err.message.contains("hashFiles"));
}

#[test]
fn syntax_errors_have_offsets_and_kinds() {
    let err = parse("github.ref == ").unwrap_err();
    assert_eq!((err.kind, err.offset), (SyntaxErrorKind::Parsing, 11));
    assert_eq!(err.message, "Unexpected end of expression: '=='");
    let err = parse("a = b").unwrap_err();
    assert_eq!((err.kind, err.offset), (SyntaxErrorKind::Lexing, 2));
    let err = parse("nope(1)").unwrap_err();
    assert_eq!(err.message, "Unrecognized function: 'nope'");
    let err = parse("contains(1)").unwrap_err();
    assert_eq!(err.message, "Too few parameters supplied: 'contains'");
    assert_eq!(
        err.github_message("contains(1)"),
        "Too few parameters supplied: 'contains'. Located at position 1 within expression: contains(1)"
    );
}

#[test]
fn hostile_input_errors_instead_of_overflowing() {
    for src in [
        "(".repeat(100_000),
        "!".repeat(100_000),
        format!("{}1{}", "(".repeat(300), ")".repeat(300)),
    ] {
        let err = parse(&src).unwrap_err();
        assert!(err.message.contains("depth"), "{}", err.message);
    }
    // Exponential growth through nested format() hits the memory bound.
    let mut src = "'xxxxxxxxxxxxxxxx'".to_string();
    for _ in 0..40 {
        src = format!("format('{{0}}{{0}}', {src})");
    }
    let err = evaluate(&src, &contexts(), &DefaultHost).unwrap_err();
    assert!(err.message().contains("maximum allowed memory"), "{err}");
}

#[test]
fn templates_split_text_and_expressions() {
    let ctx = contexts();
    let t = Template::parse("on ${{ matrix.os }}/${{ github.event_name }}!").unwrap();
    assert_eq!(
        t.eval_to_string(&ctx, &DefaultHost).unwrap(),
        "on Linux/push!"
    );
    assert!(!t.is_single_expression());
    assert_eq!(
        t.expressions()
            .map(|(_, src, off)| (src, off))
            .collect::<Vec<_>>(),
        vec![(" matrix.os ", 6), (" github.event_name ", 23)]
    );

    // `}}` inside a string literal does not close the expression.
    let t = Template::parse("${{ format('}}{0}{{', 'x') }} done").unwrap();
    assert_eq!(t.eval_to_string(&ctx, &DefaultHost).unwrap(), "}x{ done");

    // A lone expression keeps its type.
    let t = Template::parse("  ${{ fromJSON(steps.build.outputs.json) }}\n").unwrap();
    assert!(t.is_single_expression());
    assert_eq!(
        t.eval_to_value(&ctx, &DefaultHost).unwrap().to_json(),
        json!({"a": [1, 2]})
    );
    let t = Template::parse("${{ github.ref == 'refs/heads/main' }}").unwrap();
    assert_eq!(
        t.eval_to_value(&ctx, &DefaultHost).unwrap(),
        Value::Bool(true)
    );

    // Plain text and empty expressions.
    let t = Template::parse("no expressions").unwrap();
    assert!(t.is_literal());
    assert_eq!(
        t.eval_to_value(&ctx, &DefaultHost).unwrap(),
        Value::from("no expressions")
    );
    assert_eq!(
        Template::parse("[${{ }}]")
            .unwrap()
            .eval_to_string(&ctx, &DefaultHost)
            .unwrap(),
        "[]"
    );
}

#[test]
fn template_errors_point_into_the_template() {
    let err = Template::parse("echo ${{ 1 2 }}").unwrap_err();
    assert_eq!(
        (err.message.as_str(), err.offset),
        ("Unexpected symbol: '2'", 11)
    );
    let err = Template::parse("echo ${{ github.ref").unwrap_err();
    assert_eq!(err.offset, 5);
    let t = Template::parse("x ${{ format('{9}') }}").unwrap();
    assert_eq!(
        t.eval_to_string(&contexts(), &DefaultHost)
            .unwrap_err()
            .offset,
        6
    );
}

#[test]
fn single_expression_detection_without_parsing() {
    assert!(is_single_expression("${{ a }}"));
    assert!(is_single_expression(" ${{ '}}' }} "));
    assert!(!is_single_expression("${{ a }} b"));
    assert!(!is_single_expression("a ${{ b }}"));
    assert!(!is_single_expression("${{ a }}${{ b }}"));
    assert_eq!(single_expression_source("  ${{ x.y }}"), Some((" x.y ", 5)));
}

#[test]
fn analysis_lists_contexts_calls_and_paths() {
    let src = "contains(needs.build.outputs.list, matrix.os) && STEPS.x['y'].z || toJson(github.event.*.a)";
    let expr = parse(src).unwrap();
    let names: Vec<_> = expr
        .named_values()
        .into_iter()
        .map(|n| (n.name, n.offset))
        .collect();
    assert_eq!(
        names,
        vec![("needs", 9), ("matrix", 35), ("STEPS", 49), ("github", 74)]
    );
    let calls: Vec<_> = expr
        .calls()
        .into_iter()
        .map(|c| (c.function, c.name, c.arg_count, c.offset))
        .collect();
    assert_eq!(
        calls,
        vec![
            (Some(Function::Contains), "contains", 2, 0),
            (Some(Function::ToJson), "toJson", 1, 67)
        ]
    );
    let paths: Vec<_> = expr
        .paths()
        .into_iter()
        .map(|p| p.segments.join("."))
        .collect();
    assert_eq!(
        paths,
        vec![
            "needs.build.outputs.list",
            "matrix.os",
            "STEPS.x",
            "github.event"
        ]
    );
    // Each segment's offset, for a validator pointing at `build`.
    let first = &expr.paths()[0];
    let at: Vec<&str> = first
        .segment_offsets
        .iter()
        .zip(&first.segments)
        .map(|(o, s)| &src[*o..*o + s.len()])
        .collect();
    assert_eq!(at, ["needs", "build", "outputs", "list"]);
    assert!(!expr.uses_status_function());
    assert!(parse("always() && x").unwrap().uses_status_function());
    assert!(parse("1 == 2").unwrap().is_constant());
}

#[test]
fn restricted_named_values_are_syntax_errors() {
    let allowed = |name: &str| {
        ["github", "inputs"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    };
    assert!(hangar_expr::parse_with_named_values("GitHub.ref && inputs.x", &allowed).is_ok());
    let err =
        hangar_expr::parse_with_named_values("github.ref && secrets.x", &allowed).unwrap_err();
    assert_eq!(
        (err.message.as_str(), err.offset),
        ("Unrecognized named-value: 'secrets'", 14)
    );
}

#[test]
fn values_convert_to_and_from_json() {
    let json = json!({"b": [true, null, 1.5, "s"], "a": {"Nested": -3}});
    let value = Value::from(json.clone());
    assert_eq!(value.to_json(), json);
    assert_eq!(
        value
            .get("B")
            .and_then(|b| b.as_array())
            .map(<[Value]>::len),
        Some(4)
    );
    assert_eq!(
        serde_json::Value::from(Value::Number(f64::INFINITY)),
        json!("Infinity")
    );
}

#[test]
fn fuzz_entry_survives_odd_input() {
    for input in [
        "",
        "${{",
        "${{ '",
        "'",
        "a[",
        "a.*.*[*]",
        "\u{0}",
        "format('{', '{0}')",
        "${{ ${{ }} }}",
        "fromJSON('1e400')",
    ] {
        hangar_expr::fuzz_parse_and_eval(input);
    }
}

#[test]
fn conditions_read_if_values_as_github_does() {
    use hangar_expr::Condition;
    let ctx = contexts();
    let run =
        |text: &str, host: &dyn Host| Condition::parse(text).unwrap().eval(&ctx, host).unwrap();
    // Bare and wrapped forms are the same expression.
    assert!(run("github.event_name == 'push'", &DefaultHost));
    assert!(run("${{ github.event_name == 'push' }}", &DefaultHost));
    assert!(!run(" ${{ matrix.os == 'windows' }} ", &DefaultHost));
    // Empty means success().
    assert!(run("", &DefaultHost));
    assert!(!run("", &FailedHost));
    // Without a status function GitHub adds `success() &&`.
    assert!(!run("true", &FailedHost));
    assert!(run("failure()", &FailedHost));
    assert!(run("always() && matrix.os == 'linux'", &FailedHost));
    assert!(
        Condition::parse("cancelled() || true")
            .map(|c| !c.has_implicit_success())
            .unwrap()
    );
    // Text around a `${{ }}` makes a string, which is truthy when not empty.
    assert!(run("${{ false }} text", &DefaultHost));
    // Offsets point into the whole `if:` text.
    let err = Condition::parse("  ${{ github.ref == }}").unwrap_err();
    assert_eq!(err.offset, 17);
    let cond = Condition::parse("${{ format('{1}', 0) }}").unwrap();
    assert_eq!(cond.eval(&ctx, &DefaultHost).unwrap_err().offset, 4);
    assert_eq!(cond.expressions().len(), 1);
}

/// A small deterministic fuzzer over a token alphabet: parsing and evaluating
/// arbitrary token soup must return errors, never panic or overflow the stack.
#[test]
fn random_token_soup_never_panics() {
    const PIECES: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        ",",
        ".",
        "*",
        "!",
        "&&",
        "||",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "=",
        "&",
        "|",
        "1",
        "-2.5e3",
        "0x1F",
        "0o7",
        ".5",
        "'s'",
        "'",
        "''",
        "'}}'",
        "NaN",
        "Infinity",
        "null",
        "true",
        "github",
        "matrix",
        "env",
        "ref",
        "event",
        "commits",
        "format",
        "join",
        "toJSON",
        "fromJSON",
        "contains",
        "case",
        "startsWith",
        "success",
        "hashFiles",
        "'{0}{1}'",
        "'[1,{\"a\":2}]'",
        "${{",
        "}}",
        " ",
        "\n",
        "é",
        "😊",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // EXPR_FUZZ_ITERS=2000000 (with --release) for a longer run.
    let iterations: usize = std::env::var("EXPR_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    for _ in 0..iterations {
        let len = (next() % 24) as usize;
        let input: String = (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        hangar_expr::fuzz_parse_and_eval(&input);
    }
}

#[test]
fn contexts_are_case_insensitive_and_replaceable() {
    let mut ctx = Contexts::new()
        .with("GitHub", json!({"a": 1}))
        .with("env", json!({}));
    ctx.insert("github", Value::from("replaced"));
    assert_eq!(ctx.get("GITHUB"), Some(&Value::from("replaced")));
    assert_eq!(
        ctx.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        vec!["GitHub", "env"]
    );
    assert_eq!(ctx.remove("ENV"), Some(Value::from(json!({}))));
    assert!(!ctx.contains("env"));
}

#[test]
fn analysis_parse_lists_unknown_functions_and_bad_arity() {
    let expr = hangar_expr::parse_for_analysis("nope(1) || contains('a') || toJSON(1, 2)").unwrap();
    let report: Vec<String> = expr
        .calls()
        .iter()
        .map(|c| match c.function {
            None => format!("{}: unknown function '{}'", c.offset, c.name),
            Some(f) => match f.spec().check_arity(c.arg_count) {
                Ok(()) => format!("{}: ok", c.offset),
                Err(what) => format!("{}: {what}: '{}'", c.offset, c.name),
            },
        })
        .collect();
    assert_eq!(
        report,
        vec![
            "0: unknown function 'nope'",
            "11: Too few parameters supplied: 'contains'",
            "28: Too many parameters supplied: 'toJSON'",
        ]
    );
    // Evaluating such a tree is an error, not a panic.
    let err = expr.eval(&contexts(), &DefaultHost).unwrap_err();
    assert_eq!(
        (err.message.as_str(), err.offset),
        ("Unrecognized function: 'nope'", 0)
    );
    let err = hangar_expr::parse_for_analysis("contains('a')")
        .unwrap()
        .eval(&contexts(), &DefaultHost)
        .unwrap_err();
    assert!(
        err.message.contains("Wrong number of parameters"),
        "{}",
        err.message
    );
    // Other syntax errors still fail.
    assert!(hangar_expr::parse_for_analysis("nope(1 2)").is_err());
}

/// Random well-formed expressions (grammar-driven, deterministic) checked
/// against algebraic laws of GitHub's operators: `==` is symmetric, `!=` is its
/// negation, `<` mirrors `>`, `<=` mirrors `>=`, `!` is the negated truthiness,
/// and nothing panics. EXPR_PROP_ITERS raises the count.
#[test]
fn random_expressions_obey_operator_laws() {
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
        fn expr(&mut self, depth: u32) -> String {
            const LEAVES: &[&str] = &[
                "null",
                "true",
                "false",
                "0",
                "-0",
                "1",
                "-1.5",
                "0x10",
                "1e3",
                "NaN",
                "Infinity",
                "-Infinity",
                "''",
                "'a'",
                "'A'",
                "' 1 '",
                "'0x10'",
                "'it''s'",
                "'ÜΣς'",
                "'[1,2]'",
                "'{\"a\":1}'",
                "github",
                "github.ref",
                "github.event.commits",
                "github.event.commits.*.message",
                "matrix",
                "matrix.os",
                "matrix.versions",
                "matrix.versions[0]",
                "env",
                "env.EMPTY",
                "steps.build.outputs.json",
                "nothing",
            ];
            if depth == 0 || self.next().is_multiple_of(3) {
                return self.pick(LEAVES).to_string();
            }
            let (a, b) = (self.expr(depth - 1), self.expr(depth - 1));
            match self.next() % 14 {
                0 => format!("!({a})"),
                1 => format!("({a}) && ({b})"),
                2 => format!("({a}) || ({b})"),
                3 => format!(
                    "({a}) {} ({b})",
                    self.pick(&["==", "!=", "<", "<=", ">", ">="])
                ),
                4 => format!("({a})[{b}]"),
                5 => format!("({a}).*"),
                6 => format!("({a})[*]"),
                7 => format!("contains({a}, {b})"),
                8 => format!("{}({a}, {b})", self.pick(&["startsWith", "endsWith"])),
                9 => format!("format('{{0}}-{{1}}', {a}, {b})"),
                10 => format!("join({a}, {b})"),
                11 => format!("toJSON({a})"),
                12 => format!("fromJSON(toJSON({a}))"),
                _ => format!("case(({a}) == ({b}), {a}, {b})"),
            }
        }
    }
    let ctx = contexts();
    let eval = |src: &str| evaluate(src, &ctx, &DefaultHost);
    let iterations: usize = std::env::var("EXPR_PROP_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000);
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    let mut evaluated = 0;
    for _ in 0..iterations {
        let (a, b) = (g.expr(3), g.expr(3));
        let (Ok(va), Ok(vb)) = (eval(&a), eval(&b)) else {
            continue;
        };
        evaluated += 1;
        let law = |lhs: String, rhs: String| {
            let (l, r) = (eval(&lhs), eval(&rhs));
            assert_eq!(l, r, "{lhs}  vs  {rhs}");
        };
        law(format!("({a}) == ({b})"), format!("({b}) == ({a})"));
        law(format!("({a}) != ({b})"), format!("!(({a}) == ({b}))"));
        law(format!("({a}) < ({b})"), format!("({b}) > ({a})"));
        law(format!("({a}) <= ({b})"), format!("({b}) >= ({a})"));
        assert_eq!(
            eval(&format!("!({a})")).ok(),
            Some(Value::Bool(!va.is_truthy())),
            "!({a})"
        );
        assert_eq!(
            eval(&format!("!!({b})")).ok(),
            Some(Value::Bool(vb.is_truthy())),
            "!!({b})"
        );
    }
    assert!(
        evaluated > iterations / 4,
        "only {evaluated} of {iterations} generated pairs evaluated"
    );
}
