//! What a look-up hands back: an answer with its proof state, a CNAME chain of them, or the
//! reason there is none.

use std::fmt;
use std::sync::Arc;

use hickory_resolver::proto::rr::{Name, RData, RecordType};

/// The DNSSEC state of an answer (RFC 4033 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proof {
    /// Validated from the trust anchor down (for a denial: NSEC/NSEC3 proven).
    Secure,
    /// Provably outside any signed zone (an unsigned delegation).
    Insecure,
    /// Should have validated and did not: an attack or a broken zone. Never "no DANE".
    Bogus,
    /// Could not be decided (time-out, unreachable server).
    Indeterminate,
}

impl Proof {
    /// The weaker of two states: a chain is only as good as its weakest link, and a bogus link
    /// spoils it whatever else is there.
    pub fn weakest(self, other: Proof) -> Proof {
        use Proof::*;
        match (self, other) {
            (Bogus, _) | (_, Bogus) => Bogus,
            (Indeterminate, _) | (_, Indeterminate) => Indeterminate,
            (Insecure, _) | (_, Insecure) => Insecure,
            (Secure, Secure) => Secure,
        }
    }
}

impl fmt::Display for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proof::Secure => "secure",
            Proof::Insecure => "insecure",
            Proof::Bogus => "bogus",
            Proof::Indeterminate => "indeterminate",
        })
    }
}

/// What the DNS said about one name and type.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The RRset of the asked type.
    Records(Vec<RData>),
    /// The name is an alias (CNAME) for this target.
    Alias(Name),
    /// The name exists without records of this type.
    NoData,
    /// The name does not exist.
    NxDomain,
}

/// One classified answer: what the DNS said and how well it is proven.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The name asked for, fully qualified, lower case.
    pub name: Name,
    pub rtype: RecordType,
    pub proof: Proof,
    pub outcome: Outcome,
    /// Seconds the answer may be used from the moment it was received.
    pub ttl: u32,
    /// Why the answer is bogus, or how its insecurity was proven (which record, which name).
    pub why: Option<String>,
}

impl Answer {
    /// The records of the asked type (empty for denials and aliases).
    pub fn records(&self) -> &[RData] {
        match &self.outcome {
            Outcome::Records(records) => records,
            _ => &[],
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Records(r) => {
                write!(f, "{} {}: {} record(s)", self.name, self.rtype, r.len())?
            }
            Outcome::Alias(t) => write!(f, "{} {}: CNAME to {t}", self.name, self.rtype)?,
            Outcome::NoData => write!(f, "{} {}: no such record (NODATA)", self.name, self.rtype)?,
            Outcome::NxDomain => {
                write!(f, "{} {}: no such name (NXDOMAIN)", self.name, self.rtype)?
            }
        }
        write!(f, ", {}", self.proof)?;
        match &self.why {
            Some(why) => write!(f, " ({why})"),
            None => Ok(()),
        }
    }
}

/// A look-up with its CNAME chain followed: one [`Answer`] per step, the last one final.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub steps: Vec<Arc<Answer>>,
}

impl Resolution {
    /// The final answer (never an alias).
    pub fn last(&self) -> &Answer {
        self.steps
            .last()
            .expect("a resolution has at least one step")
    }

    /// The proof of the whole chain: its weakest step.
    pub fn proof(&self) -> Proof {
        self.steps
            .iter()
            .fold(Proof::Secure, |p, step| p.weakest(step.proof))
    }

    /// The name the final answer is for (the original name when there was no CNAME).
    pub fn canonical_name(&self) -> &Name {
        &self.last().name
    }

    pub fn records(&self) -> &[RData] {
        self.last().records()
    }
}

/// Why a look-up produced no answer at all. The proof state of such a look-up is
/// indeterminate, and callers must fail closed on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// The resolver could not be built as configured.
    Config(String),
    /// No usable answer for this name and type.
    Lookup {
        name: String,
        rtype: RecordType,
        reason: String,
    },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Config(why) => write!(f, "DNS resolver configuration: {why}"),
            ResolveError::Lookup {
                name,
                rtype,
                reason,
            } => write!(
                f,
                "DNS look-up of {name} {rtype} failed: {reason} (proof state: indeterminate)"
            ),
        }
    }
}

impl std::error::Error for ResolveError {}
