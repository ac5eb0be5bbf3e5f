//! Where a run, a job, a step or an approval stands, written once.
//!
//! The engine, the store, the agent protocol and the server (API, UI, forge
//! statuses) all speak these enums; their lowercase names exist only at the
//! edges where they are written or read (SQL columns, JSON, the UI), through
//! [`serde`], [`std::fmt::Display`] and [`std::str::FromStr`]. The names are
//! GitHub's (`queued`, `completed`, `success`, ...) except `waiting` and
//! `running`, which hangar's API has always used for a job whose needs or
//! approvals are pending and for a job in progress.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A value that is not one of an enum's names, kept to say what was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// What was expected (`status`, `conclusion`, `approval state`).
    pub kind: &'static str,
    pub value: String,
    /// The names that would have been accepted.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}` (expected one of: {})",
            self.kind,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name written in the store, the API and the UI.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { kind: $kind, value: s.to_string(), expected: Self::NAMES }),
                }
            }
        }
    };
}

named_enum!(
    /// Where a run, a job or a step stands.
    Status, "status" {
        /// Not startable yet: its needs run, an approval or a wait timer is
        /// pending, or its concurrency group is busy.
        Waiting = "waiting",
        /// Ready for an agent to lease.
        Queued = "queued",
        /// Leased by an agent (a job), started (a step) or with a job under way (a run).
        Running = "running",
        /// Finished; its conclusion says how.
        Completed = "completed",
    }
);

named_enum!(
    /// How a completed run, job or step ended. `Skipped` did not run (its
    /// `if:` was false, or a job it needs did not succeed).
    Conclusion, "conclusion" {
        Success = "success",
        Failure = "failure",
        Cancelled = "cancelled",
        Skipped = "skipped",
    }
);

named_enum!(
    /// Where a review of a deployment to a protected environment stands.
    ApprovalState, "approval state" {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
        /// Its run was cancelled before anyone decided.
        Cancelled = "cancelled",
    }
);

impl Status {
    /// Whether it is finished.
    pub fn is_completed(self) -> bool {
        self == Status::Completed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text forms agree: serde, Display and FromStr read back what they write.
    #[test]
    fn names_round_trip_through_every_edge() {
        fn check<T>(all: &[T])
        where
            T: Copy
                + fmt::Display
                + FromStr<Err = UnknownName>
                + Serialize
                + for<'a> Deserialize<'a>
                + PartialEq
                + fmt::Debug,
        {
            for v in all {
                let text = v.to_string();
                assert_eq!(text.parse::<T>().unwrap(), *v);
                assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{text}\""));
                assert_eq!(
                    serde_json::from_str::<T>(&format!("\"{text}\"")).unwrap(),
                    *v
                );
            }
        }
        check(Status::ALL);
        check(Conclusion::ALL);
        check(ApprovalState::ALL);
    }

    #[test]
    fn an_unknown_name_says_what_would_do() {
        let e = "in_progress".parse::<Status>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown status `in_progress` (expected one of: waiting, queued, running, completed)"
        );
        assert!("Success".parse::<Conclusion>().is_err());
        assert!(serde_json::from_str::<Conclusion>("\"timed_out\"").is_err());
    }
}
