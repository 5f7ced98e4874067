//! Test certificates made with OpenSSL: CAs, leaves with SAN dNSNames, EC P-256 keys.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// A certificate, its key, and the PEM files they were written to.
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn builder(cn: &str, key: &PKey<Private>) -> X509Builder {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b
}

fn write(dir: &Path, file: &str, cert: X509, key: PKey<Private>) -> Issued {
    let cert_path = dir.join(format!("{file}.crt"));
    let key_path = dir.join(format!("{file}.key"));
    std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    Issued {
        cert,
        key,
        cert_path,
        key_path,
    }
}

/// A self-signed CA certificate.
pub fn ca(dir: &Path, file: &str, cn: &str) -> Issued {
    let key = new_key();
    let mut b = builder(cn, &key);
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    write(dir, file, b.build(), key)
}

/// A leaf certificate issued by `issuer` (self-signed when `None`) with these SAN dNSNames.
pub fn leaf(dir: &Path, file: &str, cn: &str, sans: &[&str], issuer: Option<&Issued>) -> Issued {
    let key = new_key();
    let mut b = builder(cn, &key);
    if let Some(issuer) = issuer {
        b.set_issuer_name(issuer.cert.subject_name()).unwrap();
    }
    if !sans.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for name in sans {
            san.dns(name);
        }
        let ext = san
            .build(&b.x509v3_context(issuer.map(|i| &*i.cert), None))
            .unwrap();
        b.append_extension(ext).unwrap();
    }
    let signer = issuer.map(|i| &i.key).unwrap_or(&key);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    write(dir, file, b.build(), key)
}

/// Concatenated PEM of several certificates, written to `file`.
pub fn bundle(dir: &Path, file: &str, certs: &[&X509]) -> PathBuf {
    let path = dir.join(file);
    let pem: Vec<u8> = certs.iter().flat_map(|c| c.to_pem().unwrap()).collect();
    std::fs::write(&path, pem).unwrap();
    path
}

/// The DANE-EE record (`3 1 1`: SHA-256 of the key) that pins `cert`.
pub fn dane_ee_record(cert: &X509) -> Tlsa {
    Tlsa::for_certificate(cert, Usage::DaneEe, Selector::Spki, Matching::Sha256).unwrap()
}
