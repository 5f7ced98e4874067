//! The `dane_clientid` TLS 1.3 extension (draft-ietf-dance-tls-clientid) and in-handshake device
//! authentication.
//!
//! The server sends the extension empty in its CertificateRequest; a client with a DANE identity
//! answers with `opaque ClientName<1..255>` (presentation form, no trailing dot) in the
//! end-entity entry of its Certificate message. The server then verifies the client's
//! certificate against the TLSA records at that name *during* the handshake, so an
//! unauthenticated device never completes it.
//!
//! No code point is assigned yet, so it is a parameter; [`DEFAULT_CODE_POINT`] is in the
//! private-use range. A server that requires DANE identities refuses TLS below 1.3, where the
//! extension cannot be carried in the Certificate message.

use std::sync::{Arc, OnceLock};

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::ssl::{
    ExtensionContext, Ssl, SslAlert, SslContextBuilder, SslRef, SslVerifyMode, SslVersion,
};
use openssl::x509::{X509StoreContext, X509StoreContextRef, X509VerifyResult, X509};

use super::client::{identities_in_certificate, ClientVerification, ClientVerifier};
use super::resolver::Resolver;

/// Private-use code point used until IANA assigns one.
pub const DEFAULT_CODE_POINT: u16 = 0xFFDA;

const CONTEXT: ExtensionContext =
    ExtensionContext::TLS1_3_CERTIFICATE_REQUEST.union(ExtensionContext::TLS1_3_CERTIFICATE);

/// What a server does with a client that sends no `dane_clientid` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingName {
    /// Abort the handshake.
    Refuse,
    /// Try the DANE identities in the certificate's SAN dNSNames (`_device` and plain forms).
    FromCertificate,
    /// Complete the handshake; the connection simply has no DANE identity.
    Unauthenticated,
}

/// Server-side configuration of DANE client authentication.
pub struct ClientIdServer {
    pub resolver: Arc<Resolver>,
    pub verifier: ClientVerifier,
    pub code_point: u16,
    pub missing: MissingName,
    /// Refuse protocol versions below TLS 1.3 (set when DANE identities are required).
    pub tls13_only: bool,
}

fn name_index() -> Index<Ssl, String> {
    static IDX: OnceLock<Index<Ssl, String>> = OnceLock::new();
    *IDX.get_or_init(|| Ssl::new_ex_index().expect("SSL ex_data index"))
}

fn result_index() -> Index<Ssl, ClientVerification> {
    static IDX: OnceLock<Index<Ssl, ClientVerification>> = OnceLock::new();
    *IDX.get_or_init(|| Ssl::new_ex_index().expect("SSL ex_data index"))
}

/// The name a client sent in the extension, on the server side.
pub fn received_name(ssl: &SslRef) -> Option<&str> {
    ssl.ex_data(name_index()).map(String::as_str)
}

/// The verification of the client on this connection (server side), once its certificate was
/// checked: which name, which record matched, or why none did.
pub fn peer_identity(ssl: &SslRef) -> Option<&ClientVerification> {
    ssl.ex_data(result_index())
}

/// Client side: answer a server's `dane_clientid` request with `name`.
pub fn enable_client(
    ctx: &mut SslContextBuilder,
    name: &str,
    code_point: u16,
) -> Result<(), ErrorStack> {
    let name = name.trim_end_matches('.').as_bytes().to_vec();
    let body = encode(&name);
    ctx.add_custom_ext(
        code_point,
        CONTEXT,
        move |_ssl, context, cert| {
            // Only in our end-entity certificate entry; OpenSSL calls this only when the
            // server sent the extension in its CertificateRequest.
            let ours = context.contains(ExtensionContext::TLS1_3_CERTIFICATE)
                && matches!(cert, Some((0, _)));
            Ok(ours.then(|| body.clone()))
        },
        |_ssl, _context, _data, _cert| Ok(()),
    )
}

/// Server side: request the extension, require a client certificate, and verify it against the
/// TLSA records of the client's name inside the handshake.
pub fn enable_server(
    ctx: &mut SslContextBuilder,
    config: Arc<ClientIdServer>,
) -> Result<(), ErrorStack> {
    if config.tls13_only {
        ctx.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    }
    ctx.add_custom_ext(
        config.code_point,
        CONTEXT,
        |_ssl, context, _cert| {
            let request = context.contains(ExtensionContext::TLS1_3_CERTIFICATE_REQUEST);
            Ok(request.then(Vec::<u8>::new))
        },
        |ssl, context, data, cert| {
            if context.contains(ExtensionContext::TLS1_3_CERTIFICATE)
                && matches!(cert, Some((0, _)))
            {
                let name = decode(data).ok_or(SslAlert::DECODE_ERROR)?;
                ssl.set_ex_data(name_index(), name);
            }
            Ok(())
        },
    )?;
    let mode = SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT;
    ctx.set_verify_callback(mode, move |_preverify, store| verify(&config, store));
    Ok(())
}

/// The verify callback: called by OpenSSL for each certificate of the chain and for each
/// error. PKIX errors are not ours to judge (DANE decides); the decision is taken once, on the
/// first call for the end-entity certificate, and remembered on the `SSL`.
fn verify(config: &ClientIdServer, store: &mut X509StoreContextRef) -> bool {
    if store.error_depth() != 0 {
        return true;
    }
    let Some((leaf, chain)) = super::ossl::presented_chain(store) else {
        return false;
    };
    let Ok(idx) = X509StoreContext::ssl_idx() else {
        return false;
    };
    let Some(ssl) = store.ex_data(idx) else {
        return false;
    };
    if let Some(done) = peer_identity(ssl) {
        return done.authenticated();
    }
    let decision = decide(config, ssl, &leaf, &chain);
    let ok = decision.as_ref().is_some_and(|v| v.authenticated())
        || (decision.is_none() && config.missing == MissingName::Unauthenticated);
    if let Some(v) = decision {
        super::ossl::set_ssl_ex_data(ssl, result_index(), v);
    }
    if !ok {
        store.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
    }
    ok
}

/// `None`: no name to verify (no extension and none in the certificate).
fn decide(
    config: &ClientIdServer,
    ssl: &SslRef,
    leaf: &X509,
    chain: &[X509],
) -> Option<ClientVerification> {
    if config.tls13_only && ssl.version2() != Some(SslVersion::TLS1_3) {
        return None;
    }
    let names = match received_name(ssl) {
        Some(name) => vec![name.to_string()],
        None if config.missing == MissingName::FromCertificate => identities_in_certificate(leaf),
        None => Vec::new(),
    };
    let mut last = None;
    for name in names {
        let v = config.verifier.verify(&config.resolver, &name, leaf, chain);
        if v.authenticated() {
            return Some(v);
        }
        last = Some(v);
    }
    last
}

/// `opaque ClientName<1..255>`: one length byte, then the name.
pub(crate) fn encode(name: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(name.len() + 1);
    body.push(name.len() as u8);
    body.extend_from_slice(name);
    body
}

pub(crate) fn decode(data: &[u8]) -> Option<String> {
    let (&len, name) = data.split_first()?;
    if len == 0 || name.len() != usize::from(len) || !name.is_ascii() {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?;
    Some(name.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_name_encoding() {
        let body = encode(b"sensor7._device.example.com");
        assert_eq!(body[0] as usize, body.len() - 1);
        assert_eq!(
            decode(&body).as_deref(),
            Some("sensor7._device.example.com")
        );
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0]), None);
        assert_eq!(decode(&[3, b'a', b'b']), None);
    }
}
