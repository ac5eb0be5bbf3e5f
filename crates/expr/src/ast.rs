//! The syntax tree, with the byte offset of every node, and the analysis
//! helpers validators use (named values and function calls referenced).

use crate::functions::Function;
use crate::value::Value;

/// A parsed expression. Parse once with [`crate::parse`], evaluate many times
/// with [`Expr::eval`].
#[derive(Clone, Debug)]
pub struct Expr {
    pub(crate) root: Node,
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub kind: NodeKind,
    /// Byte offset of the token that starts (or, for operators, names) this node.
    pub offset: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    Literal(Value),
    /// A named value (context) such as `github`.
    NamedValue {
        name: Box<str>,
    },
    /// `target.name` (the key is a string value, ready for lookups).
    Property {
        target: Box<Node>,
        key: Value,
    },
    /// `target[index]`.
    Index {
        target: Box<Node>,
        index: Box<Node>,
    },
    /// `target.*` or `target[*]`.
    Wildcard {
        target: Box<Node>,
    },
    Not(Box<Node>),
    /// `a && b && c`, flattened as GitHub does (it counts as one level of depth).
    And(Vec<Node>),
    Or(Vec<Node>),
    Compare {
        op: CmpOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    Call {
        /// `None` only in trees from [`crate::parse_for_analysis`].
        function: Option<Function>,
        /// As written.
        name: Box<str>,
        args: Vec<Node>,
    },
}

/// A named value (context) referenced by an expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedValueRef<'e> {
    /// As written (`GitHub` stays `GitHub`; compare ignoring ASCII case).
    pub name: &'e str,
    /// Byte offset in the expression's source.
    pub offset: usize,
}

/// A function call in an expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRef<'e> {
    /// `None` for an unknown function (possible only after
    /// [`crate::parse_for_analysis`]).
    pub function: Option<Function>,
    /// As written (`tojson`); the canonical name is `function.name()`.
    pub name: &'e str,
    pub arg_count: usize,
    /// Byte offset of the function name in the expression's source.
    pub offset: usize,
}

/// A context path that starts at a named value and continues with literal
/// property names, e.g. `steps.build.outputs.version` (stops at the first
/// computed index or wildcard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRef<'e> {
    pub segments: Vec<&'e str>,
    pub offset: usize,
    /// Byte offset of each segment (the named value's, then each property
    /// name's), so a validator can point at `build` in `needs.build.result`.
    pub segment_offsets: Vec<usize>,
}

impl Expr {
    /// Every named value referenced, in source order.
    pub fn named_values(&self) -> Vec<NamedValueRef<'_>> {
        let mut out = Vec::new();
        self.root.walk(&mut |node| {
            if let NodeKind::NamedValue { name, .. } = &node.kind {
                out.push(NamedValueRef {
                    name,
                    offset: node.offset,
                });
            }
        });
        out.sort_by_key(|r| r.offset);
        out
    }

    /// Every function call, in source order.
    pub fn calls(&self) -> Vec<CallRef<'_>> {
        let mut out = Vec::new();
        self.root.walk(&mut |node| {
            if let NodeKind::Call {
                function,
                name,
                args,
            } = &node.kind
            {
                out.push(CallRef {
                    function: *function,
                    name,
                    arg_count: args.len(),
                    offset: node.offset,
                });
            }
        });
        out.sort_by_key(|r| r.offset);
        out
    }

    /// The longest literal property paths rooted at named values
    /// (`needs.build.outputs.x` → `["needs", "build", "outputs", "x"]`).
    pub fn paths(&self) -> Vec<PathRef<'_>> {
        let mut out = Vec::new();
        collect_paths(&self.root, true, &mut out);
        out.sort_by_key(|r| r.offset);
        out
    }

    /// True when the expression is a constant (no named values, no status or
    /// `hashFiles` calls), so it evaluates the same everywhere.
    pub fn is_constant(&self) -> bool {
        let mut constant = true;
        self.root.walk(&mut |node| match &node.kind {
            NodeKind::NamedValue { .. } => constant = false,
            NodeKind::Call { function, .. }
                if function.is_none_or(|f| f.status().is_some() || f == Function::HashFiles) =>
            {
                constant = false;
            }
            _ => {}
        });
        constant
    }

    /// True when the expression calls one of the status functions
    /// (`success()`, `always()`, `cancelled()`, `failure()`): an `if:` that does
    /// not is implicitly `success() && (...)` on GitHub.
    pub fn uses_status_function(&self) -> bool {
        self.calls()
            .iter()
            .any(|c| c.function.and_then(Function::status).is_some())
    }
}

/// Pushes the path ending at `node` if it is a maximal literal path (`outer`
/// means no enclosing property access continues it).
fn collect_paths<'e>(node: &'e Node, outer: bool, out: &mut Vec<PathRef<'e>>) {
    match &node.kind {
        NodeKind::Property { .. } | NodeKind::NamedValue { .. } if outer => {
            if let Some(path) = literal_path(node) {
                out.push(path);
            }
            if let NodeKind::Property { target, .. } = &node.kind {
                collect_paths(target, false, out);
            }
        }
        NodeKind::Property { target, .. } => collect_paths(target, false, out),
        NodeKind::NamedValue { .. } | NodeKind::Literal(_) => {}
        NodeKind::Index { target, index } => {
            collect_paths(target, true, out);
            collect_paths(index, true, out);
        }
        NodeKind::Wildcard { target } | NodeKind::Not(target) => collect_paths(target, true, out),
        NodeKind::And(items) | NodeKind::Or(items) | NodeKind::Call { args: items, .. } => {
            items.iter().for_each(|n| collect_paths(n, true, out));
        }
        NodeKind::Compare { left, right, .. } => {
            collect_paths(left, true, out);
            collect_paths(right, true, out);
        }
    }
}

fn literal_path(node: &Node) -> Option<PathRef<'_>> {
    match &node.kind {
        NodeKind::NamedValue { name, .. } => Some(PathRef {
            segments: vec![name],
            offset: node.offset,
            segment_offsets: vec![node.offset],
        }),
        NodeKind::Property { target, key } => {
            let mut path = literal_path(target)?;
            path.segments.push(key.as_str()?);
            // A property node sits at its `.`; the name follows it.
            path.segment_offsets.push(node.offset + 1);
            Some(path)
        }
        _ => None,
    }
}

impl Node {
    pub(crate) fn walk<'e>(&'e self, f: &mut dyn FnMut(&'e Node)) {
        f(self);
        match &self.kind {
            NodeKind::Literal(_) | NodeKind::NamedValue { .. } => {}
            NodeKind::Property { target, .. }
            | NodeKind::Wildcard { target }
            | NodeKind::Not(target) => target.walk(f),
            NodeKind::Index { target, index } => {
                target.walk(f);
                index.walk(f);
            }
            NodeKind::And(items) | NodeKind::Or(items) | NodeKind::Call { args: items, .. } => {
                items.iter().for_each(|n| n.walk(f));
            }
            NodeKind::Compare { left, right, .. } => {
                left.walk(f);
                right.walk(f);
            }
        }
    }
}
