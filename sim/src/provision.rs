//! Putting the device key and certificate on the card before it is used.

use crate::crypto;
use crate::state::{File, ObjRef, PrivateKey, PublicKey, Store};
use openssl::pkey::PKey;

/// File usage (tag 21) of an X.509 certificate.
pub const USAGE_CERT: u8 = 0x02;
/// Key usage (tag 4E): general purpose.
const USAGE_KEY: u8 = 0x01;
/// Common name of the self-signed certificate made when none is given.
const SELF_SIGNED_CN: &str = "iotsafe-sim device";

/// Where the device key pair and its certificate live.
#[derive(Debug, Clone)]
pub struct Layout {
    pub key_id: Vec<u8>,
    pub pub_key_id: Vec<u8>,
    pub key_label: Vec<u8>,
    /// The public key's label: the private key's in a combined layout, its own in a separate one.
    pub pub_key_label: Vec<u8>,
    pub cert_id: Vec<u8>,
    pub cert_label: Vec<u8>,
}

/// Reads a P-256 private key (PEM or DER, any of the usual containers)
/// and returns its scalar.
pub fn load_private_key(input: &[u8]) -> Result<Vec<u8>, String> {
    let key = PKey::private_key_from_pem(input)
        .or_else(|_| PKey::private_key_from_der(input))
        .map_err(|e| format!("cannot parse private key: {e}"))?;
    let ec = key.ec_key().map_err(|_| "private key is not an EC key")?;
    let d = ec
        .private_key()
        .to_vec_padded(crypto::FIELD_LEN as i32)
        .map_err(|e| e.to_string())?;
    // Rebuilding checks the scalar is valid on P-256.
    crypto::private_key(&d).map_err(|_| "private key is not a P-256 key")?;
    Ok(d)
}

/// Stores (or replaces) the device key pair from a scalar.
pub fn set_key(store: &mut Store, l: &Layout, d: Vec<u8>) -> Result<(), String> {
    let q = crypto::public_point(&d).map_err(|e| e.to_string())?;
    store.privs.retain(|k| k.id != l.key_id);
    store.pubs.retain(|k| k.id != l.pub_key_id);
    store.privs.push(PrivateKey {
        id: l.key_id.clone(),
        label: l.key_label.clone(),
        usage: USAGE_KEY,
        d,
        pub_id: l.pub_key_id.clone(),
        sign_count: 0,
    });
    store.pubs.push(PublicKey {
        id: l.pub_key_id.clone(),
        label: l.pub_key_label.clone(),
        usage: USAGE_KEY,
        q: Some(q),
        volatile: false,
    });
    Ok(())
}

/// Stores (or replaces) the certificate file; input is PEM or DER.
pub fn set_cert(store: &mut Store, l: &Layout, input: &[u8]) -> Result<(), String> {
    let der = crypto::cert_to_der(input).map_err(|e| format!("cannot parse certificate: {e}"))?;
    let q = store
        .public(&ObjRef::Id(l.pub_key_id.clone()))
        .and_then(|k| k.q.as_ref());
    if !q.is_some_and(|q| crypto::cert_has_key(&der, q)) {
        // Allowed on purpose (tests of hosts that must notice), but said.
        eprintln!("iotsafe-sim: warning: the certificate is not for the device key");
    }
    store.files.retain(|f| f.id != l.cert_id);
    store.files.push(File {
        id: l.cert_id.clone(),
        label: l.cert_label.clone(),
        usage: USAGE_CERT,
        data: der,
    });
    Ok(())
}

/// Fills an empty card: the given key (or a new one) and a self-signed
/// certificate for it, so the card always has a certificate.
pub fn provision(store: &mut Store, l: &Layout, d: Option<Vec<u8>>) -> Result<(), String> {
    let d = match d {
        Some(d) => d,
        None => crypto::generate().map_err(|e| e.to_string())?.0,
    };
    let cert = crypto::self_signed_cert(&d, SELF_SIGNED_CN).map_err(|e| e.to_string())?;
    set_key(store, l, d)?;
    set_cert(store, l, &cert)
}
