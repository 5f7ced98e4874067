//! The TLSA record a registry publishes for a device: `3 1 1` (DANE-EE, the SHA-256 of the
//! device's public key) of a certificate or a public key, or one given as `U S M HEX`.

use std::path::Path;

use dane::tlsa::{Matching, Selector, Tlsa, Usage};
use openssl::pkey::PKey;
use openssl::x509::X509;

use crate::RegistryError;

/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 64 * 1024;

/// The `3 1 1` record of the certificate in `path` (PEM or DER).
pub fn of_certificate_file(path: &Path) -> Result<Tlsa, RegistryError> {
    let bytes = read_bounded(path)?;
    let cert = X509::from_pem(&bytes)
        .or_else(|_| X509::from_der(&bytes))
        .map_err(|_| input(path, "not a certificate (PEM or DER)"))?;
    // Usable only: a key that cannot be read would never pass a handshake.
    cert.public_key()
        .map_err(|_| input(path, "the certificate's public key cannot be read"))?;
    // The certificate's own SubjectPublicKeyInfo, as the broker's check selects it, not a
    // re-encoding of its key (which differs for a key not in canonical form).
    Tlsa::for_certificate(&cert, Usage::DaneEe, Selector::Spki, Matching::Sha256)
        .map_err(|e| input(path, &format!("cannot hash the public key: {e}")))
}

/// The `3 1 1` record of the public key in `path` (PEM or DER SubjectPublicKeyInfo).
pub fn of_public_key_file(path: &Path) -> Result<Tlsa, RegistryError> {
    let bytes = read_bounded(path)?;
    let key = PKey::public_key_from_pem(&bytes)
        .or_else(|_| PKey::public_key_from_der(&bytes))
        .map_err(|_| input(path, "not a public key (PEM or DER SubjectPublicKeyInfo)"))?;
    of_key(path, &key)
}

/// The record of a certificate or, failing that, a public key in `path` (`rotate --new`).
pub fn of_certificate_or_key_file(path: &Path) -> Result<Tlsa, RegistryError> {
    of_certificate_file(path).or_else(|_| {
        of_public_key_file(path)
            .map_err(|_| input(path, "neither a certificate nor a public key (PEM or DER)"))
    })
}

/// A record given as `U S M HEX`, usable as OpenSSL's DANE would use it.
pub fn parse(text: &str) -> Result<Tlsa, RegistryError> {
    let record: Tlsa = text
        .parse()
        .map_err(|e| RegistryError::Input(format!("--record: {e} (expected \"U S M HEX\")")))?;
    if !record.is_usable() {
        return Err(RegistryError::Input(format!(
            "--record {record}: not a usable TLSA record (unknown usage, selector or matching \
             type, or data of the wrong length)"
        )));
    }
    Ok(record)
}

fn of_key<T: openssl::pkey::HasPublic>(path: &Path, key: &PKey<T>) -> Result<Tlsa, RegistryError> {
    let spki = key
        .public_key_to_der()
        .map_err(|_| input(path, "the public key cannot be encoded"))?;
    Tlsa::for_public_key(&spki, Usage::DaneEe, Matching::Sha256)
        .map_err(|e| input(path, &format!("cannot hash the public key: {e}")))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, RegistryError> {
    crate::read_bounded(path, MAX_PEM_BYTES, false)
        .map_err(|e| input(path, &format!("cannot read: {e}")))
}

fn input(path: &Path, why: &str) -> RegistryError {
    RegistryError::Input(format!("{}: {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record published for a certificate is the one the broker's check matches: for a
    /// key the certificate does not carry in canonical form (an RSA key without its NULL
    /// parameters), the hash of the certificate's own SubjectPublicKeyInfo, not of the key
    /// re-encoded.
    #[test]
    fn a_certificates_record_is_the_one_its_holder_is_checked_against() {
        let der = include_bytes!("../../dane/testdata/rsa-key-without-null-parameters.der");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.der");
        std::fs::write(&path, der).unwrap();
        let published = of_certificate_file(&path).unwrap();

        let cert = X509::from_der(der).unwrap();
        assert!(published.matches(&cert), "{published}");
        let re_encoded = cert.public_key().unwrap().public_key_to_der().unwrap();
        let of_the_key =
            Tlsa::for_public_key(&re_encoded, Usage::DaneEe, Matching::Sha256).unwrap();
        assert_ne!(published, of_the_key);
    }
}
