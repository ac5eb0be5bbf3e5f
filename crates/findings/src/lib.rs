//! Findings shared by the scanners, rendered as text, JSON and SARIF 2.1.0.
