//! TLSA records (RFC 6698): fields, owner names, matching a certificate, presentation form.
//!
//! Matching a single record against a single certificate lives here because device identities
//! ([`super::client`]) need it outside a TLS handshake. For servers, OpenSSL's own DANE code does
//! the matching on the handshake's chain ([`super::server`]); the two agree because both hash the
//! same DER (the certificate, or its SubjectPublicKeyInfo) with the same digests.

use std::fmt;
use std::str::FromStr;

use foreign_types::ForeignType;
use hickory_resolver::proto::rr::rdata::TLSA as HickoryTlsa;
use hickory_resolver::proto::rr::RData;
use openssl::hash::{hash, MessageDigest};
use openssl::x509::{X509Ref, X509};

/// Certificate usage (RFC 6698 §2.1.1, names from RFC 7218).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Usage {
    PkixTa = 0,
    PkixEe = 1,
    DaneTa = 2,
    DaneEe = 3,
}

/// Which part of the certificate is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// The whole certificate (DER).
    Cert = 0,
    /// The SubjectPublicKeyInfo (DER).
    Spki = 1,
}

/// How the selected data is presented in the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Matching {
    Full = 0,
    Sha256 = 1,
    Sha512 = 2,
}

impl Usage {
    pub fn from_u8(v: u8) -> Option<Self> {
        [Self::PkixTa, Self::PkixEe, Self::DaneTa, Self::DaneEe]
            .into_iter()
            .find(|u| *u as u8 == v)
    }

    /// RFC 7218 mnemonic.
    pub fn name(self) -> &'static str {
        match self {
            Usage::PkixTa => "PKIX-TA",
            Usage::PkixEe => "PKIX-EE",
            Usage::DaneTa => "DANE-TA",
            Usage::DaneEe => "DANE-EE",
        }
    }
}

impl Selector {
    pub fn from_u8(v: u8) -> Option<Self> {
        [Self::Cert, Self::Spki].into_iter().find(|s| *s as u8 == v)
    }
}

impl Matching {
    pub fn from_u8(v: u8) -> Option<Self> {
        [Self::Full, Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|m| *m as u8 == v)
    }

    fn digest(self) -> Option<MessageDigest> {
        match self {
            Matching::Full => None,
            Matching::Sha256 => Some(MessageDigest::sha256()),
            Matching::Sha512 => Some(MessageDigest::sha512()),
        }
    }
}

/// One TLSA record. Fields are kept as the DNS gave them: a record with a value this code does
/// not know is kept (and reported) but never matches, as RFC 6698 §4.1 requires ("unusable").
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub mtype: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    pub fn new(usage: Usage, selector: Selector, mtype: Matching, data: Vec<u8>) -> Self {
        Self {
            usage: usage as u8,
            selector: selector as u8,
            mtype: mtype as u8,
            data,
        }
    }

    /// The record that a certificate satisfies with these parameters.
    pub fn for_certificate(
        cert: &X509Ref,
        usage: Usage,
        selector: Selector,
        mtype: Matching,
    ) -> Result<Self, openssl::error::ErrorStack> {
        let selected = select(cert, selector)?;
        Self::for_selected(usage, selector, mtype, selected)
    }

    /// The selector 1 record of a public key (DER SubjectPublicKeyInfo), e.g. one read from a
    /// card, with no certificate needed.
    pub fn for_public_key(
        spki_der: &[u8],
        usage: Usage,
        mtype: Matching,
    ) -> Result<Self, openssl::error::ErrorStack> {
        Self::for_selected(usage, Selector::Spki, mtype, spki_der.to_vec())
    }

    fn for_selected(
        usage: Usage,
        selector: Selector,
        mtype: Matching,
        selected: Vec<u8>,
    ) -> Result<Self, openssl::error::ErrorStack> {
        let data = match mtype.digest() {
            None => selected,
            Some(md) => hash(md, &selected)?.to_vec(),
        };
        Ok(Self::new(usage, selector, mtype, data))
    }

    pub fn usage(&self) -> Option<Usage> {
        Usage::from_u8(self.usage)
    }

    /// The one usability rule (RFC 6698 §4.1, RFC 7671 §4), OpenSSL's (`SSL_dane_tlsa_add`), so
    /// that a record counts as usable here exactly when OpenSSL's DANE will use it: known usage,
    /// selector and matching type; a digest of the digest's length; for a full record
    /// (matching type 0) one whole DER certificate or SubjectPublicKeyInfo, nothing after it,
    /// whose public key OpenSSL can decode.
    pub fn is_usable(&self) -> bool {
        let (Some(_), Some(selector), Some(m)) = (
            Usage::from_u8(self.usage),
            Selector::from_u8(self.selector),
            Matching::from_u8(self.mtype),
        ) else {
            return false;
        };
        match m.digest() {
            Some(md) => self.data.len() == md.size(),
            None => is_whole_der_with_key(selector, &self.data),
        }
    }

    /// Whether `cert` is the certificate (or carries the key) this record designates. The usage
    /// is not looked at here: which certificate of a chain must match is the caller's rule.
    pub fn matches(&self, cert: &X509Ref) -> bool {
        if !self.is_usable() {
            return false;
        }
        let (Some(selector), Some(mtype)) = (
            Selector::from_u8(self.selector),
            Matching::from_u8(self.mtype),
        ) else {
            return false;
        };
        let Ok(selected) = select(cert, selector) else {
            return false;
        };
        match mtype.digest() {
            None => selected == self.data,
            Some(md) => hash(md, &selected).is_ok_and(|d| *d == *self.data),
        }
    }

    /// From a DNS answer's record data.
    pub fn from_rdata(rdata: &RData) -> Option<Self> {
        match rdata {
            RData::TLSA(t) => Some(Self::from(t)),
            _ => None,
        }
    }

    /// The zone-file line `<owner> <ttl> IN TLSA u s m <hex>`.
    pub fn to_zone_line(&self, owner: &str, ttl: u32) -> String {
        format!("{} {ttl} IN TLSA {self}", fqdn(owner))
    }

    /// Parses a zone-file line: `[owner] [ttl] [IN] TLSA u s m <hex>`, or the generic form
    /// `[owner] [ttl] [IN] TYPE52 \# <len> <hex>` that some tools print (hash-slinger's `tlsa`).
    /// Returns the owner when the line has one.
    pub fn parse_zone_line(line: &str) -> Result<(Option<String>, Tlsa), TlsaParseError> {
        let fields: Vec<&str> = line
            .split_whitespace()
            .filter(|f| *f != "(" && *f != ")")
            .collect();
        let err = || TlsaParseError(line.trim().to_string());
        let pos = fields
            .iter()
            .position(|f| f.eq_ignore_ascii_case("TLSA") || f.eq_ignore_ascii_case("TYPE52"))
            .ok_or_else(err)?;
        let owner = (pos > 0
            && !fields[0].chars().all(|c| c.is_ascii_digit())
            && !fields[0].eq_ignore_ascii_case("IN"))
        .then(|| fields[0].to_string());
        let rest = &fields[pos + 1..];
        let record = if rest.first() == Some(&"\\#") {
            let bytes =
                iotsafe_hex::decode(&rest.get(2..).ok_or_else(err)?.concat()).map_err(|_| err())?;
            let len: usize = rest.get(1).and_then(|l| l.parse().ok()).ok_or_else(err)?;
            if bytes.len() != len || len < 3 {
                return Err(err());
            }
            Tlsa {
                usage: bytes[0],
                selector: bytes[1],
                mtype: bytes[2],
                data: bytes[3..].to_vec(),
            }
        } else {
            rest.join(" ").parse().map_err(|_| err())?
        };
        Ok((owner, record))
    }
}

impl From<&HickoryTlsa> for Tlsa {
    fn from(t: &HickoryTlsa) -> Self {
        Self {
            usage: t.cert_usage.into(),
            selector: t.selector.into(),
            mtype: t.matching.into(),
            data: t.cert_data.clone(),
        }
    }
}

/// The record data in presentation form: `3 1 1 <hex>`.
impl fmt::Display for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.usage,
            self.selector,
            self.mtype,
            iotsafe_hex::encode_lower(&self.data)
        )
    }
}

impl fmt::Debug for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLSA({self})")
    }
}

/// Parses `u s m <hex>` (the hex may be split by spaces).
impl FromStr for Tlsa {
    type Err = TlsaParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TlsaParseError(s.trim().to_string());
        let mut it = s.split_whitespace();
        let mut field = || it.next().and_then(|f| f.parse::<u8>().ok()).ok_or_else(err);
        let (usage, selector, mtype) = (field()?, field()?, field()?);
        let hex: String = s.split_whitespace().skip(3).collect();
        let data = iotsafe_hex::decode(&hex)
            .ok()
            .filter(|d| !d.is_empty())
            .ok_or_else(err)?;
        Ok(Tlsa {
            usage,
            selector,
            mtype,
            data,
        })
    }
}

/// A TLSA record that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsaParseError(pub String);

impl fmt::Display for TlsaParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a TLSA record: {:?}", self.0)
    }
}

impl std::error::Error for TlsaParseError {}

/// Digest agility (RFC 7671 §9): among records of one usage and selector, only those with the
/// strongest digest present count, so that a weak digest can be retired by publishing a
/// stronger one next to it. Exact-match records (matching type 0) are not digests and always
/// count. Unusable records are dropped.
pub fn agile(records: &[Tlsa]) -> Vec<&Tlsa> {
    let strongest = |usage: u8, selector: u8| {
        records
            .iter()
            .filter(|r| r.is_usable() && r.usage == usage && r.selector == selector)
            .map(|r| r.mtype)
            .max()
            .unwrap_or(0)
    };
    records
        .iter()
        .filter(|r| r.is_usable())
        .filter(|r| r.mtype == 0 || r.mtype == strongest(r.usage, r.selector))
        .collect()
}

/// The owner name of a service's TLSA records: `_<port>._<proto>.<host>.` (RFC 6698 §3).
pub fn service_owner(port: u16, proto: &str, host: &str) -> String {
    format!("_{port}._{proto}.{}", fqdn(host))
}

/// `name` with exactly one trailing dot, lower case.
pub fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

/// Whether `data` is exactly one DER certificate (or SubjectPublicKeyInfo) with a public key
/// OpenSSL decodes: parsed by the same functions, with the same checks, as `SSL_dane_tlsa_add`.
fn is_whole_der_with_key(selector: Selector, data: &[u8]) -> bool {
    let Ok(len) = libc::c_long::try_from(data.len()) else {
        return false;
    };
    let mut next = data.as_ptr();
    // SAFETY: d2i reads at most `len` bytes from `next`, advances it past what it parsed, and
    // returns a new object (or NULL) that is owned here and freed before returning.
    let ok = unsafe {
        match selector {
            Selector::Cert => {
                let cert = openssl_sys::d2i_X509(std::ptr::null_mut(), &mut next, len);
                !cert.is_null() && X509::from_ptr(cert).public_key().is_ok()
            }
            Selector::Spki => {
                let key = openssl_sys::d2i_PUBKEY(std::ptr::null_mut(), &mut next, len);
                openssl_sys::EVP_PKEY_free(key);
                !key.is_null()
            }
        }
    };
    // A failed parse leaves errors queued; they are no one's business.
    let _ = openssl::error::ErrorStack::get();
    ok && next as usize == data.as_ptr() as usize + data.len()
}

fn select(cert: &X509Ref, selector: Selector) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    match selector {
        Selector::Cert => cert.to_der(),
        Selector::Spki => crate::ossl::spki_der(cert),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(u: u8, s: u8, m: u8, len: usize) -> Tlsa {
        Tlsa {
            usage: u,
            selector: s,
            mtype: m,
            data: vec![0xab; len],
        }
    }

    #[test]
    fn presentation_round_trip() {
        let t: Tlsa = "3 1 1 ABcd 0102".parse().unwrap();
        assert_eq!(t.data, vec![0xab, 0xcd, 1, 2]);
        assert_eq!(t.to_string(), "3 1 1 abcd0102");
        let line = t.to_zone_line("_8883._tcp.Broker.example", 300);
        assert_eq!(
            line,
            "_8883._tcp.broker.example. 300 IN TLSA 3 1 1 abcd0102"
        );
        let (owner, back) = Tlsa::parse_zone_line(&line).unwrap();
        assert_eq!(owner.as_deref(), Some("_8883._tcp.broker.example."));
        assert_eq!(back, t);
    }

    #[test]
    fn generic_form_and_bad_lines() {
        let (owner, t) = Tlsa::parse_zone_line("_443._tcp.h. IN TYPE52 \\# 5 030101abcd").unwrap();
        assert_eq!(owner.as_deref(), Some("_443._tcp.h."));
        assert_eq!((t.usage, t.selector, t.mtype), (3, 1, 1));
        assert_eq!(t.data, vec![0xab, 0xcd]);
        assert!(Tlsa::parse_zone_line("_443._tcp.h. IN TYPE52 \\# 6 030101abcd").is_err());
        assert!(Tlsa::parse_zone_line("h. IN A 127.0.0.1").is_err());
        assert!("3 1 1 xyz".parse::<Tlsa>().is_err());
        assert!("3 1".parse::<Tlsa>().is_err());
    }

    #[test]
    fn usability_checks_digest_length() {
        assert!(rec(3, 1, 1, 32).is_usable());
        assert!(!rec(3, 1, 1, 31).is_usable());
        assert!(rec(3, 1, 2, 64).is_usable());
        assert!(!rec(4, 1, 1, 32).is_usable());
        assert!(!rec(3, 2, 1, 32).is_usable());
        assert!(!rec(3, 1, 3, 32).is_usable());
    }

    /// A self-signed certificate with a P-256 key.
    fn certificate() -> X509 {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::nid::Nid;
        use openssl::pkey::PKey;
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_pubkey(&key).unwrap();
        let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
        b.set_not_before(&now).unwrap();
        b.set_not_after(&now).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    fn certificate_with(key: &openssl::pkey::PKeyRef<openssl::pkey::Private>) -> X509 {
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_pubkey(key).unwrap();
        let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
        b.set_not_before(&now).unwrap();
        b.set_not_after(&now).unwrap();
        let digest = match key.id() {
            openssl::pkey::Id::ED25519 => MessageDigest::null(),
            _ => MessageDigest::sha256(),
        };
        b.sign(key, digest).unwrap();
        X509::from_der(&b.build().to_der().unwrap()).unwrap()
    }

    /// Selector 1 selects the SubjectPublicKeyInfo the certificate carries (as OpenSSL's own
    /// DANE matching does), for each kind of key; for a canonically encoded key these are the
    /// bytes a re-encoding of the key gives too.
    #[test]
    fn the_spki_selected_is_the_certificates_own() {
        use openssl::pkey::PKey;
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let keys = [
            PKey::from_ec_key(ec).unwrap(),
            PKey::generate_ed25519().unwrap(),
            PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap(),
        ];
        for key in keys {
            let cert = certificate_with(&key);
            let selected = select(&cert, Selector::Spki).unwrap();
            let encoded = cert.public_key().unwrap().public_key_to_der().unwrap();
            assert_eq!(selected, encoded, "{:?}", key.id());
            let der = cert.to_der().unwrap();
            assert!(
                der.windows(selected.len()).any(|w| w == selected),
                "{:?}: not the certificate's own bytes",
                key.id()
            );
        }
    }

    /// A certificate whose RSA key's AlgorithmIdentifier has no NULL parameters (which
    /// OpenSSL decodes, and re-encodes with them): selector 1 takes the certificate's form,
    /// not the re-encoded one, so a record made from the key alone does not match it.
    #[test]
    fn the_spki_selected_is_not_a_re_encoding_of_the_key() {
        let der = include_bytes!("../testdata/rsa-key-without-null-parameters.der");
        let cert = X509::from_der(der).unwrap();
        let selected = select(&cert, Selector::Spki).unwrap();
        let re_encoded = cert.public_key().unwrap().public_key_to_der().unwrap();
        assert_ne!(selected, re_encoded);
        assert!(der.windows(selected.len()).any(|w| w == selected));
    }

    fn full(usage: u8, selector: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            mtype: 0,
            data,
        }
    }

    /// Our rule and OpenSSL's `SSL_dane_tlsa_add` agree record by record, the malformed
    /// `3 1 0 0102030405` included.
    #[test]
    fn usability_is_what_openssl_accepts() {
        let cert = certificate();
        let der = cert.to_der().unwrap();
        let spki = cert.public_key().unwrap().public_key_to_der().unwrap();
        let with_tail = |d: &[u8]| [d, &[0][..]].concat();
        let cases = [
            ("3 1 0 0102030405".parse::<Tlsa>().unwrap(), false),
            (full(3, 1, spki.clone()), true),
            (full(2, 1, spki.clone()), true),
            (full(3, 1, with_tail(&spki)), false),
            (full(3, 1, spki[..spki.len() - 1].to_vec()), false),
            (full(3, 1, der.clone()), false),
            (full(3, 0, der.clone()), true),
            (full(2, 0, der.clone()), true),
            (full(3, 0, with_tail(&der)), false),
            (full(3, 0, spki.clone()), false),
            (full(3, 0, vec![0x30, 0x03, 0x02, 0x01, 0x01]), false),
            (rec(3, 1, 1, 32), true),
            (rec(3, 1, 1, 31), false),
            (rec(3, 0, 2, 64), true),
            (rec(3, 0, 2, 32), false),
            (rec(0, 1, 1, 32), true),
            (rec(1, 0, 1, 32), true),
            (rec(4, 1, 1, 32), false),
            (rec(3, 2, 1, 32), false),
            (rec(3, 1, 3, 32), false),
            (rec(255, 255, 255, 32), false),
        ];
        let ctx = openssl::ssl::SslContext::builder(openssl::ssl::SslMethod::tls_client())
            .unwrap()
            .build();
        for (record, usable) in cases {
            let mut ssl = openssl::ssl::Ssl::new(&ctx).unwrap();
            super::super::ossl::dane_enable(&mut ssl, &["example.test".into()]).unwrap();
            let openssl_says = super::super::ossl::tlsa_add(
                &mut ssl,
                record.usage,
                record.selector,
                record.mtype,
                &record.data,
            )
            .unwrap();
            assert_eq!(openssl_says, usable, "OpenSSL on {record:?}");
            assert_eq!(record.is_usable(), usable, "our rule on {record:?}");
        }
    }

    #[test]
    fn digest_agility_keeps_the_strongest() {
        let spki = certificate()
            .public_key()
            .unwrap()
            .public_key_to_der()
            .unwrap();
        let records = [
            rec(3, 1, 1, 32),
            rec(3, 1, 2, 64),
            rec(2, 0, 1, 32),
            full(3, 1, spki),
            rec(3, 1, 0, 10),
        ];
        let kept = agile(&records);
        assert_eq!(kept, vec![&records[1], &records[2], &records[3]]);
    }

    #[test]
    fn owner_names() {
        assert_eq!(
            service_owner(8883, "tcp", "Broker.Example."),
            "_8883._tcp.broker.example."
        );
        assert_eq!(fqdn("a.b"), "a.b.");
    }
}
