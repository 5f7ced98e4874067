//! P-256 key operations, all done by OpenSSL.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, BigNumContext};
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Bytes of a P-256 scalar or coordinate.
pub const FIELD_LEN: usize = 32;

/// Hash algorithms by their IoT SAFE identifiers (tag 91).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn from_id(id: &[u8]) -> Option<Self> {
        match id {
            [0x00, 0x01] => Some(HashAlg::Sha256),
            [0x00, 0x02] => Some(HashAlg::Sha384),
            [0x00, 0x04] => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    pub fn md(self) -> MessageDigest {
        match self {
            HashAlg::Sha256 => MessageDigest::sha256(),
            HashAlg::Sha384 => MessageDigest::sha384(),
            HashAlg::Sha512 => MessageDigest::sha512(),
        }
    }
}

/// The curves an IoT SAFE applet offers for its EC keys (both with 32-byte coordinates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    BrainpoolP256r1,
}

impl Curve {
    fn nid(self) -> Nid {
        match self {
            Curve::P256 => Nid::X9_62_PRIME256V1,
            Curve::BrainpoolP256r1 => Nid::BRAINPOOL_P256R1,
        }
    }

    /// The key type of tag 4B: 13/14 P-256, 23/24 brainpoolP256r1 (persistent/volatile).
    pub fn key_type(self, volatile: bool) -> u8 {
        let persistent = match self {
            Curve::P256 => 0x13,
            Curve::BrainpoolP256r1 => 0x23,
        };
        persistent + u8::from(volatile)
    }
}

/// The curve of every key on the simulated card (`--curve`), set once at start-up: a card
/// model offers its keys on one curve.
static CURVE: OnceLock<Curve> = OnceLock::new();

/// Chooses the card's curve; only the first call counts.
pub fn set_curve(curve: Curve) {
    let _ = CURVE.set(curve);
}

pub fn curve() -> Curve {
    *CURVE.get().unwrap_or(&Curve::P256)
}

fn group() -> EcGroup {
    EcGroup::from_curve_name(curve().nid()).expect("both curves are built into OpenSSL")
}

/// A fresh key pair: (private scalar, uncompressed public point).
pub fn generate() -> Result<(Vec<u8>, Vec<u8>), ErrorStack> {
    let key = EcKey::generate(&group())?;
    let d = key.private_key().to_vec_padded(FIELD_LEN as i32)?;
    let q = encode_point(key.public_key())?;
    Ok((d, q))
}

fn encode_point(p: &openssl::ec::EcPointRef) -> Result<Vec<u8>, ErrorStack> {
    let mut ctx = BigNumContext::new()?;
    p.to_bytes(&group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
}

/// The private key object rebuilt from its stored scalar.
pub fn private_key(d: &[u8]) -> Result<EcKey<Private>, ErrorStack> {
    let g = group();
    let d = BigNum::from_slice(d)?;
    let mut ctx = BigNumContext::new()?;
    let mut q = EcPoint::new(&g)?;
    q.mul_generator2(&g, &d, &mut ctx)?;
    let key = EcKey::from_private_components(&g, &d, &q)?;
    key.check_key()?;
    Ok(key)
}

/// Parses an uncompressed point (04 X Y), checking it is on the curve.
pub fn public_key(q: &[u8]) -> Result<EcKey<Public>, ErrorStack> {
    let g = group();
    let mut ctx = BigNumContext::new()?;
    let p = EcPoint::from_bytes(&g, q, &mut ctx)?;
    let key = EcKey::from_public_key(&g, &p)?;
    key.check_key()?;
    Ok(key)
}

/// Whether `q` is a valid uncompressed P-256 point.
pub fn is_valid_point(q: &[u8]) -> bool {
    q.len() == 1 + 2 * FIELD_LEN && q[0] == 0x04 && public_key(q).is_ok()
}

/// The public point matching a private scalar.
pub fn public_point(d: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    encode_point(private_key(d)?.public_key())
}

thread_local! {
    /// Keys already derived from their scalars: deriving (and checking) one costs several
    /// scalar multiplications, more than the signature itself, and a real card keeps its key
    /// ready too.
    static SIGNING_KEYS: RefCell<HashMap<Vec<u8>, EcKey<Private>>> = RefCell::new(HashMap::new());
}

/// ECDSA over a finished digest; returns raw r||s, each left-padded.
pub fn sign_digest(d: &[u8], digest: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    let cached = SIGNING_KEYS.with(|keys| keys.borrow().get(d).cloned());
    let key = match cached {
        Some(key) => key,
        None => {
            let key = private_key(d)?;
            SIGNING_KEYS.with(|keys| keys.borrow_mut().insert(d.to_vec(), key.clone()));
            key
        }
    };
    let sig = EcdsaSig::sign(digest, &key)?;
    let mut out = sig.r().to_vec_padded(FIELD_LEN as i32)?;
    out.extend(sig.s().to_vec_padded(FIELD_LEN as i32)?);
    Ok(out)
}

/// Checks a raw r||s signature over a digest.
pub fn verify_digest(q: &[u8], digest: &[u8], rs: &[u8]) -> bool {
    let check = || -> Result<bool, ErrorStack> {
        let (r, s) = rs.split_at(FIELD_LEN);
        let sig =
            EcdsaSig::from_private_components(BigNum::from_slice(r)?, BigNum::from_slice(s)?)?;
        let key = public_key(q)?;
        sig.verify(digest, &key)
    };
    rs.len() == 2 * FIELD_LEN && check().unwrap_or(false)
}

/// ECDH: the x coordinate of d * Q.
pub fn ecdh(d: &[u8], peer: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    let ours = PKey::from_ec_key(private_key(d)?)?;
    let theirs = PKey::from_ec_key(public_key(peer)?)?;
    let mut deriver = Deriver::new(&ours)?;
    deriver.set_peer(&theirs)?;
    deriver.derive_to_vec()
}

/// A self-signed certificate (DER) for the key, so a provisioned card
/// always carries one.
pub fn self_signed_cert(d: &[u8], cn: &str) -> Result<Vec<u8>, ErrorStack> {
    let key = PKey::from_ec_key(private_key(d)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    serial.rand(64, openssl::bn::MsbOption::MAYBE_ZERO, false)?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(3650)?.as_ref())?;
    b.sign(&key, MessageDigest::sha256())?;
    b.build().to_der()
}

/// Accepts a certificate in PEM or DER and returns DER.
pub fn cert_to_der(input: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    let cert = X509::from_pem(input).or_else(|_| X509::from_der(input))?;
    cert.to_der()
}

/// Whether a DER certificate carries the public key `q`.
pub fn cert_has_key(der: &[u8], q: &[u8]) -> bool {
    let check = || -> Result<bool, ErrorStack> {
        let cert_key = X509::from_der(der)?.public_key()?;
        let ours = PKey::from_ec_key(public_key(q)?)?;
        Ok(cert_key.public_eq(&ours))
    };
    check().unwrap_or(false)
}

/// SubjectPublicKeyInfo PEM of an uncompressed point.
pub fn public_key_pem(q: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    public_key(q)?.public_key_to_pem()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_ecdh() {
        let (d, q) = generate().unwrap();
        assert_eq!(public_point(&d).unwrap(), q);
        let digest = [5u8; 32];
        let rs = sign_digest(&d, &digest).unwrap();
        assert!(verify_digest(&q, &digest, &rs));
        assert!(!verify_digest(&q, &[6u8; 32], &rs));
        let (d2, q2) = generate().unwrap();
        assert_eq!(ecdh(&d, &q2).unwrap(), ecdh(&d2, &q).unwrap());
        assert!(is_valid_point(&q));
        let mut bad = q.clone();
        bad[64] ^= 1;
        assert!(!is_valid_point(&bad));
        let der = self_signed_cert(&d, "t").unwrap();
        assert_eq!(cert_to_der(&der).unwrap(), der);
    }
}
