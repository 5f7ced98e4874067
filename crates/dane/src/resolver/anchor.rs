//! Trust anchors for the root zone, and hickory's anchor set built from them.

use std::path::Path;
use std::str::FromStr;

use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::proto::dnssec::rdata::{DNSSECRData, DNSKEY};
use hickory_resolver::proto::dnssec::{DigestType, TrustAnchors, Verifier};
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{Name, RData, RecordType};

use super::super::wire::Wire;
use super::net::{request_options, Pool};
use super::{config_err, ResolveError};

/// Trust anchors for the root zone: DNSKEY lines, DS lines, or the built-in IANA root keys.
#[derive(Clone, Debug)]
pub struct TrustAnchor {
    /// Zone-file text of root DNSKEY records (empty for the built-in IANA keys).
    dnskeys: String,
    /// Root DS records: (key tag, algorithm, digest type, digest).
    ds: Vec<(u16, u8, u8, Vec<u8>)>,
}

impl TrustAnchor {
    /// The IANA root keys compiled into hickory (KSK-2017 and KSK-2024).
    pub fn iana_root() -> Self {
        Self {
            dnskeys: String::new(),
            ds: Vec::new(),
        }
    }

    /// Reads zone-file lines of root DNSKEY or DS records (e.g.
    /// `. 3600 IN DNSKEY 257 3 13 <base64>`), as unbound's or ldns' root key files have them.
    pub fn from_file(path: &Path) -> Result<Self, ResolveError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ResolveError::Config(format!("trust anchor file {}: {e}", path.display()))
        })?;
        text.parse().map_err(|e: ResolveError| {
            // The file's name before the parser's reason, said once ("DNS resolver
            // configuration: FILE: REASON", not the prefix twice).
            let why = match e {
                ResolveError::Config(why) => why,
                other => other.to_string(),
            };
            ResolveError::Config(format!("{}: {why}", path.display()))
        })
    }

    fn is_builtin(&self) -> bool {
        self.dnskeys.is_empty() && self.ds.is_empty()
    }
}

impl FromStr for TrustAnchor {
    type Err = ResolveError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut anchor = TrustAnchor {
            dnskeys: String::new(),
            ds: Vec::new(),
        };
        for line in text.lines() {
            let line = line.split(';').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(pos) = fields.iter().position(|f| *f == "DNSKEY" || *f == "DS") else {
                return Err(config_err(format!("not a DNSKEY or DS record: {line}")));
            };
            if fields[0] != "." {
                // hickory's validator loops on anchors below the root; refuse them loudly.
                return Err(config_err(format!(
                    "trust anchor for {} refused: only root (.) anchors are supported",
                    fields[0]
                )));
            }
            if fields[pos] == "DNSKEY" {
                // hickory's parser wants TTL and class, which root key files often omit.
                let rdata = fields[pos + 1..].join(" ");
                anchor
                    .dnskeys
                    .push_str(&format!(". 3600 IN DNSKEY {rdata}\n"));
            } else {
                anchor.ds.push(parse_ds(&fields[pos + 1..], line)?);
            }
        }
        if anchor.is_builtin() {
            return Err(config_err(
                "no DNSKEY or DS record in the trust anchor".into(),
            ));
        }
        Ok(anchor)
    }
}

fn parse_ds(f: &[&str], line: &str) -> Result<(u16, u8, u8, Vec<u8>), ResolveError> {
    let bad = || config_err(format!("malformed DS record: {line}"));
    if f.len() < 4 {
        return Err(bad());
    }
    let hex: String = f[3..].concat();
    Ok((
        f[0].parse().map_err(|_| bad())?,
        f[1].parse().map_err(|_| bad())?,
        f[2].parse().map_err(|_| bad())?,
        iotsafe_hex::decode(&hex).ok().ok_or_else(bad)?,
    ))
}

/// Builds hickory's trust anchors: DNSKEY lines as given; DS lines by fetching the root DNSKEY
/// RRset (unvalidated) and keeping the keys whose digest matches a DS.
pub(super) async fn fetch_anchors(
    anchor: &TrustAnchor,
    wire: &Wire<Pool>,
) -> Result<TrustAnchors, ResolveError> {
    if anchor.is_builtin() {
        return Ok(TrustAnchors::default());
    }
    let mut text = anchor.dnskeys.clone();
    if !anchor.ds.is_empty() {
        let query = Query::query(Name::root(), RecordType::DNSKEY);
        let response = wire
            .lookup(query, request_options())
            .first_answer()
            .await
            .map_err(|e| {
                config_err(format!(
                    "cannot fetch the root DNSKEY RRset for the DS trust anchor: {e}"
                ))
            })?;
        let mut matched = 0;
        for record in &response.answers {
            let RData::DNSSEC(DNSSECRData::DNSKEY(key)) = &record.data else {
                continue;
            };
            if ds_matches(key, &anchor.ds) {
                text.push_str(&format!("{record}\n"));
                matched += 1;
            }
        }
        if matched == 0 {
            return Err(config_err(
                "no root DNSKEY matches the DS trust anchor".into(),
            ));
        }
    }
    TrustAnchors::from_str(&text).map_err(|e| config_err(format!("trust anchor: {e}")))
}

fn ds_matches(key: &DNSKEY, ds: &[(u16, u8, u8, Vec<u8>)]) -> bool {
    let Ok(tag) = key.calculate_key_tag() else {
        return false;
    };
    ds.iter().any(|(ds_tag, alg, dtype, digest)| {
        *ds_tag == tag
            && u8::from(key.algorithm()) == *alg
            && key
                .to_digest(&Name::root(), DigestType::from(*dtype))
                .is_ok_and(|d| d.as_ref() == digest.as_slice())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's refusal names the file and the reason, the configuration prefix once.
    #[test]
    fn a_refused_anchor_file_is_named_with_its_reason_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zone.key");
        std::fs::write(&path, "example. 3600 IN DS 12345 13 2 abcd\n").unwrap();
        let message = TrustAnchor::from_file(&path).unwrap_err().to_string();
        assert_eq!(
            message.matches("DNS resolver configuration").count(),
            1,
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("only root (.) anchors"), "{message}");
    }
}
