//! GitHub Actions expression language: lexer, parser, evaluator, values and contexts.
