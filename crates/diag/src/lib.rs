//! Diagnostics with file:line:col and a source snippet, shared by every parser.
