//! Waiting until a change is seen: fresh look-ups through the project's validating resolver
//! until the TLSA RRset at a name is what the change made it, proven secure.
//!
//! "Fresh" means that this tool's own answer cache is skipped. The resolver asked (by default
//! the system's, from `/etc/resolv.conf`) may be a caching one: it serves what it holds until
//! the TTL runs out, so the wait measures when *that* resolver shows the change, which can be
//! up to the previous answer's TTL after the primary applied it.

use std::time::{Duration, Instant};

use dane::resolver::{Answer, Outcome, Proof, Resolver};
use dane::tlsa::Tlsa;
use hickory_resolver::proto::rr::RecordType;

use crate::RegistryError;

/// How often the resolver is asked again (each look-up is a few queries to the server).
const POLL_EVERY: Duration = Duration::from_millis(50);

/// What the RRset at a name should look like once a change has reached the resolver.
#[derive(Clone, Debug)]
pub enum Expect {
    /// The record is in a secure RRset.
    Present(Tlsa),
    /// The record is not there, and what is there is proven (a secure RRset without it, or a
    /// secure denial).
    Absent(Tlsa),
    /// A secure RRset of exactly these records.
    Exactly(Vec<Tlsa>),
    /// A secure denial: no TLSA records at the name.
    None,
}

impl Expect {
    /// Whether `answer` shows the change.
    pub fn is_met_by(&self, answer: &Answer) -> bool {
        if answer.proof != Proof::Secure {
            return false;
        }
        let records: Vec<Tlsa> = answer
            .records()
            .iter()
            .filter_map(Tlsa::from_rdata)
            .collect();
        let denied = matches!(answer.outcome, Outcome::NoData | Outcome::NxDomain);
        match self {
            Expect::Present(record) => records.contains(record),
            Expect::Absent(record) => denied || (!records.is_empty() && !records.contains(record)),
            Expect::Exactly(wanted) => {
                records.len() == wanted.len() && wanted.iter().all(|w| records.contains(w))
            }
            Expect::None => denied,
        }
    }
}

/// Asks `resolver` afresh until the TLSA RRset at `name` meets `expect`, at most `limit`;
/// returns how long that took.
pub fn until_seen(
    resolver: &Resolver,
    name: &str,
    expect: &Expect,
    limit: Duration,
) -> Result<Duration, RegistryError> {
    let start = Instant::now();
    loop {
        let last = match resolver.lookup_fresh(name, RecordType::TLSA) {
            Ok(answer) if expect.is_met_by(&answer) => return Ok(start.elapsed()),
            Ok(answer) => answer.to_string(),
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= limit {
            return Err(RegistryError::NotSeen(format!(
                "{name} was not seen as expected ({}) through the resolver {} within {} s; last \
                 answer: {last}",
                describe(expect),
                resolver.config().server,
                limit.as_secs()
            )));
        }
        std::thread::sleep(POLL_EVERY);
    }
}

fn describe(expect: &Expect) -> String {
    match expect {
        Expect::Present(r) => format!("TLSA {r} present, secure"),
        Expect::Absent(r) => format!("TLSA {r} absent, proven secure"),
        Expect::Exactly(rs) => format!("exactly {} TLSA record(s), secure", rs.len()),
        Expect::None => "no TLSA records, secure denial".into(),
    }
}

/// The TLSA RRset at `name` as the resolver sees it now (not from its cache).
pub fn show(resolver: &Resolver, name: &str) -> Result<std::sync::Arc<Answer>, RegistryError> {
    resolver
        .lookup_fresh(name, RecordType::TLSA)
        .map_err(|e| RegistryError::NotSeen(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::tlsa::TLSA;
    use hickory_resolver::proto::rr::{Name, RData};

    fn record(byte: u8) -> Tlsa {
        Tlsa {
            usage: 3,
            selector: 1,
            mtype: 1,
            data: vec![byte; 32],
        }
    }

    fn answer(proof: Proof, outcome: Outcome) -> Answer {
        Answer {
            name: Name::from_ascii("d._device.iotregistry.test.").unwrap(),
            rtype: RecordType::TLSA,
            proof,
            outcome,
            ttl: 300,
            why: None,
        }
    }

    fn records(proof: Proof, records: &[Tlsa]) -> Answer {
        let rdata = records
            .iter()
            .map(|r| {
                RData::TLSA(TLSA::new(
                    r.usage.into(),
                    r.selector.into(),
                    r.mtype.into(),
                    r.data.clone(),
                ))
            })
            .collect();
        answer(proof, Outcome::Records(rdata))
    }

    #[test]
    fn only_a_secure_answer_shows_a_change() {
        let (a, b) = (record(1), record(2));
        for proof in [Proof::Insecure, Proof::Bogus, Proof::Indeterminate] {
            assert!(
                !Expect::Present(a.clone()).is_met_by(&records(proof, std::slice::from_ref(&a)))
            );
            assert!(!Expect::None.is_met_by(&answer(proof, Outcome::NxDomain)));
            assert!(!Expect::Absent(a.clone()).is_met_by(&records(proof, std::slice::from_ref(&b))));
        }
    }

    #[test]
    fn each_expectation_on_secure_answers() {
        let (a, b) = (record(1), record(2));
        let both = records(Proof::Secure, &[a.clone(), b.clone()]);
        let only_b = records(Proof::Secure, std::slice::from_ref(&b));
        let nx = answer(Proof::Secure, Outcome::NxDomain);
        let nodata = answer(Proof::Secure, Outcome::NoData);

        assert!(Expect::Present(a.clone()).is_met_by(&both));
        assert!(!Expect::Present(a.clone()).is_met_by(&only_b));
        assert!(!Expect::Present(a.clone()).is_met_by(&nx));

        assert!(Expect::Absent(a.clone()).is_met_by(&only_b));
        assert!(Expect::Absent(a.clone()).is_met_by(&nx));
        assert!(Expect::Absent(a.clone()).is_met_by(&nodata));
        assert!(!Expect::Absent(a.clone()).is_met_by(&both));

        assert!(Expect::Exactly(vec![b.clone()]).is_met_by(&only_b));
        assert!(!Expect::Exactly(vec![b.clone()]).is_met_by(&both));
        assert!(!Expect::Exactly(vec![b.clone()]).is_met_by(&nx));

        assert!(Expect::None.is_met_by(&nx) && Expect::None.is_met_by(&nodata));
        assert!(!Expect::None.is_met_by(&only_b));
    }
}
