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
//!
//! These rules keep the verdict honest after the handshake:
//! - an authenticated client is reported as verified (`SSL_get_verify_result` is `X509_V_OK`),
//!   as OpenSSL's own DANE does, and only then;
//! - a verdict belongs to one handshake: what the server learns lives in a per-handshake state
//!   on the `SSL`, replaced when a handshake starts (after `SSL_clear`, or in a renegotiation,
//!   the next client is decided anew); when that hook did not run, every client is refused;
//! - a resumed session skips the Certificate message, so resumption goes only through session
//!   tickets (the server's session cache is off), each ticket carries the authenticated name,
//!   and a ticket resumes only while that name still verifies the session's certificate against
//!   the DNS as it is now. The resolver keeps an answer no longer than its TTL, so a removed
//!   record ends resumption when it ends full handshakes. A session resumed some other way
//!   (the application switched a session cache back on) has no identity and a verify result
//!   that is not `X509_V_OK`.
//!
//! The callbacks are installed with OpenSSL's C API (see `ossl`), so the `SSL` objects may be
//! made by C code (`SSL_new`), as the C API's users make them.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use openssl::ex_data::Index;
use openssl::ssl::{
    ExtensionContext, Ssl, SslAlert, SslContextBuilder, SslRef, SslSessionCacheMode, SslVerifyMode,
    SslVersion,
};
use openssl::x509::{X509Ref, X509StoreContextRef, X509VerifyResult, X509};

use super::client::{identities_in_certificate, ClientVerification, ClientVerifier, Refusal};
use super::ossl;
use super::resolver::Resolver;

/// At most this many identities of a certificate's SAN dNSNames are looked up for a client
/// that sends no name ([`MissingName::FromCertificate`]); a certificate naming more is refused.
pub const MAX_CERT_IDENTITIES: usize = 8;

/// Private-use code point used until IANA assigns one.
pub const DEFAULT_CODE_POINT: u16 = 0xFFDA;

const CONTEXT: ExtensionContext =
    ExtensionContext::TLS1_3_CERTIFICATE_REQUEST.union(ExtensionContext::TLS1_3_CERTIFICATE);

/// What a server does with a client that sends no `dane_clientid` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingName {
    /// Abort the handshake.
    Refuse,
    /// Try the DANE identities in the certificate's SAN dNSNames (`_device` and plain forms):
    /// at most [`MAX_CERT_IDENTITIES`] of them, all within the verifier's time budget.
    FromCertificate,
    /// Complete the handshake; the connection simply has no DANE identity.
    Unauthenticated,
}

/// The device-verification settings of a server, which may change after it was configured
/// (allowed domains, CAs): every handshake takes the current ones.
#[derive(Clone)]
pub struct SharedVerifier(Arc<RwLock<Arc<ClientVerifier>>>);

impl SharedVerifier {
    pub fn new(verifier: ClientVerifier) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(verifier))))
    }

    /// The settings now (a verification in progress keeps the ones it started with).
    pub fn current(&self) -> Arc<ClientVerifier> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// New settings for every verification from now on.
    pub fn replace(&self, verifier: ClientVerifier) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(verifier);
    }
}

impl From<ClientVerifier> for SharedVerifier {
    fn from(verifier: ClientVerifier) -> Self {
        Self::new(verifier)
    }
}

/// Server-side configuration of DANE client authentication.
pub struct ClientIdServer {
    pub resolver: Arc<Resolver>,
    pub verifier: SharedVerifier,
    pub code_point: u16,
    pub missing: MissingName,
    /// Refuse protocol versions below TLS 1.3 (set when DANE identities are required).
    pub tls13_only: bool,
}

/// What the server learnt about the client in the current handshake on an `SSL`. Replaced by
/// an empty one when a handshake starts, so that nothing of an earlier handshake on the same
/// `SSL` (after `SSL_clear`, or a renegotiation) is taken for this one. Missing altogether
/// when our handshake hook did not run (the application replaced the context's info
/// callback): then every client is refused, as nothing here could be trusted.
#[derive(Default)]
struct HandshakeState {
    /// The name the client sent in the extension.
    name: Option<String>,
    /// The verification of the client's certificate, and that certificate.
    verdict: Option<(ClientVerification, X509)>,
    /// The identity re-verified for a session ticket the client offered (used only when the
    /// session was in fact resumed).
    resumed: Option<ClientVerification>,
}

/// The `SSL` ex_data slot of the handshake state; `None` when OpenSSL could not make one (then
/// no handshake is tracked, and every client is refused, as when our hook did not run).
fn state_index() -> Option<Index<Ssl, HandshakeState>> {
    static IDX: OnceLock<Option<Index<Ssl, HandshakeState>>> = OnceLock::new();
    *IDX.get_or_init(|| Ssl::new_ex_index().ok())
}

fn state(ssl: &SslRef) -> Option<&HandshakeState> {
    ssl.ex_data(state_index()?)
}

fn state_mut(ssl: &mut SslRef) -> Option<&mut HandshakeState> {
    ssl.ex_data_mut(state_index()?)
}

/// Whether a handshake on `ssl` started under our hook (so that its state is this handshake's).
pub fn handshake_tracked(ssl: &SslRef) -> bool {
    state(ssl).is_some()
}

/// The name a client sent in the extension in the current handshake, on the server side.
pub fn received_name(ssl: &SslRef) -> Option<&str> {
    state(ssl)?.name.as_deref()
}

/// The verification of the client on this connection (server side), once its certificate was
/// checked in the current handshake: which name, which record matched, or why none did. On a
/// resumed session, the verification re-done for it when the client offered its ticket; a
/// session resumed without that (one the application's own session cache found) has none.
pub fn peer_identity(ssl: &SslRef) -> Option<&ClientVerification> {
    let state = state(ssl)?;
    if ssl.session_reused() {
        state.resumed.as_ref()
    } else {
        state.verdict.as_ref().map(|(v, _)| v)
    }
}

/// The client's identity on this connection (server side), or why it has none: its
/// verification's refusal, [`Refusal::NoIdentity`] when it named no identity (or the handshake
/// did not get that far), [`Refusal::NotChecked`] when our handshake hook did not run (every
/// client is refused then).
pub fn peer_outcome(ssl: &SslRef) -> Result<&ClientVerification, Refusal> {
    match peer_identity(ssl) {
        Some(v) => v.result.as_ref().map(|_| v).map_err(Refusal::clone),
        None if !handshake_tracked(ssl) => Err(Refusal::NotChecked),
        None => Err(Refusal::NoIdentity),
    }
}

/// The identity a handshake of this process authenticated with `cert` as the client's
/// certificate (the object `SSL_get1_peer_certificate` returns, e.g. through a broker's plugin
/// API), recorded when that handshake finished; `None` for any other certificate.
pub fn handshake_identity(cert: &X509Ref) -> Option<String> {
    ossl::certificate_name(cert)
}

/// Client side: answer a server's `dane_clientid` request with `name`.
pub fn enable_client(
    ctx: &mut SslContextBuilder,
    name: &str,
    code_point: u16,
) -> Result<(), String> {
    let name = name.trim_end_matches('.').as_bytes().to_vec();
    let ext = ClientExtension {
        body: encode(&name),
    };
    ossl::add_custom_ext(&ossl::configuring(), ctx, code_point, CONTEXT, ext)
}

/// The client's half of the extension: its name, in its end-entity certificate entry.
struct ClientExtension {
    body: Vec<u8>,
}

impl ossl::CustomExtension for ClientExtension {
    fn add(&self, context: ExtensionContext, cert_index: Option<usize>) -> Option<&[u8]> {
        // Only in our end-entity certificate entry; OpenSSL calls this only when the server
        // sent the extension in its CertificateRequest.
        let ours = context.contains(ExtensionContext::TLS1_3_CERTIFICATE) && cert_index == Some(0);
        ours.then_some(self.body.as_slice())
    }

    fn parse(
        &self,
        _ssl: &mut SslRef,
        _context: ExtensionContext,
        _data: &[u8],
        _cert_index: Option<usize>,
    ) -> Result<(), SslAlert> {
        Ok(())
    }
}

/// The server's half: request the extension, keep the name the client sends.
struct ServerExtension;

impl ossl::CustomExtension for ServerExtension {
    fn add(&self, context: ExtensionContext, _cert_index: Option<usize>) -> Option<&[u8]> {
        let request = context.contains(ExtensionContext::TLS1_3_CERTIFICATE_REQUEST);
        request.then_some(&[][..])
    }

    fn parse(
        &self,
        ssl: &mut SslRef,
        context: ExtensionContext,
        data: &[u8],
        cert_index: Option<usize>,
    ) -> Result<(), SslAlert> {
        if context.contains(ExtensionContext::TLS1_3_CERTIFICATE) && cert_index == Some(0) {
            let name = decode(data).ok_or(SslAlert::DECODE_ERROR)?;
            // No state: our handshake hook did not run (see `HandshakeState`).
            state_mut(ssl).ok_or(SslAlert::INTERNAL_ERROR)?.name = Some(name);
        }
        Ok(())
    }
}

/// Server side: request the extension, require a client certificate, and verify it against the
/// TLSA records of the client's name inside the handshake. Sessions resume only through
/// tickets, and a ticket resumes only while its identity still verifies (revocation holds).
pub fn enable_server(
    ctx: &mut SslContextBuilder,
    config: Arc<ClientIdServer>,
) -> Result<(), String> {
    if config.tls13_only {
        ctx.set_min_proto_version(Some(SslVersion::TLS1_3))
            .map_err(|e| format!("cannot require TLS 1.3: {e}"))?;
    }
    let lock = ossl::configuring();
    ossl::add_custom_ext(&lock, ctx, config.code_point, CONTEXT, ServerExtension)?;
    let mode = SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT;
    ossl::set_verify_check(&lock, ctx, mode, config.clone())?;
    ossl::set_handshake_hooks(&lock, ctx, config.clone())?;
    ossl::set_ticket_check(&lock, ctx, config)?;
    // A session found in the server's cache would resume without the ticket check.
    ctx.set_session_cache_mode(SslSessionCacheMode::OFF);
    Ok(())
}

impl ossl::CertificateCheck for ClientIdServer {
    fn check(&self, _preverify: bool, ssl: &mut SslRef, store: &mut X509StoreContextRef) -> bool {
        verify(self, ssl, store)
    }
}

/// The verify callback: called by OpenSSL for each certificate of the chain and for each
/// error. PKIX errors are not ours to judge (DANE decides); the decision is taken once, on the
/// first call for the end-entity certificate, and remembered on the `SSL`. An authenticated
/// client is reported as verified (`SSL_get_verify_result` is `X509_V_OK`), as OpenSSL's own
/// DANE does.
fn verify(config: &ClientIdServer, ssl: &mut SslRef, store: &mut X509StoreContextRef) -> bool {
    if store.error_depth() != 0 {
        return true;
    }
    // No state: our handshake hook did not run (see `HandshakeState`).
    let Some(state) = state(ssl) else {
        return settle(store, false, false);
    };
    let Some((leaf, chain)) = super::ossl::presented_chain(store) else {
        return false;
    };
    // Decided already in this handshake (OpenSSL calls once per error at depth 0): the same
    // verdict, but only for the same certificate. Another one means the state is an earlier
    // handshake's, which our hook did not clear: refuse.
    if let Some((done, decided_leaf)) = &state.verdict {
        let same = *decided_leaf == leaf;
        return settle(
            store,
            same && done.authenticated(),
            same && done.authenticated(),
        );
    }
    let decision = decide(config, ssl, &leaf, &chain);
    let authenticated = decision.as_ref().is_some_and(|v| v.authenticated());
    let ok =
        authenticated || (decision.is_none() && config.missing == MissingName::Unauthenticated);
    if !ok {
        ossl::raise_verify_error(&refusal_line(decision.as_ref()));
    }
    if let (Some(v), Some(state)) = (decision, state_mut(ssl)) {
        state.verdict = Some((v, leaf));
    }
    settle(store, ok, authenticated)
}

/// Why a client was refused, in one line (the identity and the refusal).
fn refusal_line(decision: Option<&ClientVerification>) -> String {
    match decision.map(|v| (&v.name, &v.result)) {
        Some((name, Err(why))) => format!("client {name}: {why}"),
        _ => format!("client: {}", Refusal::NoIdentity),
    }
}

/// The verdict as OpenSSL records it: the store's error is what `SSL_get_verify_result`
/// reports after the handshake.
fn settle(store: &mut X509StoreContextRef, ok: bool, authenticated: bool) -> bool {
    if authenticated {
        store.set_error(X509VerifyResult::OK);
    } else if !ok {
        store.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
    }
    ok
}

/// Version of what a ticket carries: the authenticated device name after it.
const TICKET_IDENTITY_V1: u8 = 1;

impl ossl::TicketCheck for ClientIdServer {
    /// The authenticated name, so that resuming re-verifies it.
    fn seal(&self, ssl: &SslRef) -> Option<Vec<u8>> {
        let v = peer_identity(ssl).filter(|v| v.authenticated())?;
        let mut sealed = vec![TICKET_IDENTITY_V1];
        sealed.extend_from_slice(v.name.as_bytes());
        Some(sealed)
    }

    /// A ticket resumes only when its name still authenticates the session's certificate with
    /// the DNS as it is now (the resolver's cache keeps an answer no longer than its TTL, so a
    /// removed record stops resumption when it stops a full handshake). A session without an
    /// identity resumes only where identities are optional.
    fn may_resume(&self, ssl: &mut SslRef, sealed: Option<&[u8]>, peer: Option<&X509Ref>) -> bool {
        let name = match sealed {
            None => return self.missing == MissingName::Unauthenticated,
            Some([TICKET_IDENTITY_V1, name @ ..]) => std::str::from_utf8(name).ok(),
            Some(_) => None,
        };
        let (Some(name), Some(peer)) = (name, peer) else {
            return false;
        };
        // The chain is not in the session: identities by DANE-TA need a full handshake.
        let v = self
            .verifier
            .current()
            .verify(&self.resolver, name, peer, &[]);
        let ok = v.authenticated();
        match state_mut(ssl) {
            Some(state) => state.resumed = Some(v),
            // Our handshake hook did not run (see `HandshakeState`).
            None => return false,
        }
        ok
    }
}

impl ossl::HandshakeHooks for ClientIdServer {
    /// Nothing learnt in an earlier handshake on this `SSL` counts in this one.
    fn started(&self, ssl: &mut SslRef) {
        if let Some(index) = state_index() {
            ssl.set_ex_data(index, HandshakeState::default());
        }
    }

    /// A session resumed without our re-check (found by a session cache the application
    /// switched back on, or by its own session callbacks) carries the verdict of the handshake
    /// it came from, which may no longer hold: fail closed, no identity (see [`peer_identity`])
    /// and a verify result that is not `X509_V_OK` (one that already says "not verified", as
    /// for a session without an identity, stays).
    ///
    /// An authenticated identity is also recorded on the client's certificate object, for code
    /// that gets the certificate but not the `SSL` ([`handshake_identity`]).
    fn done(&self, ssl: &mut SslRef) {
        let rechecked = peer_identity(ssl).is_some_and(ClientVerification::authenticated);
        if ssl.session_reused() && !rechecked && ssl.verify_result() == X509VerifyResult::OK {
            ossl::refuse_verify_result(ssl);
        }
        if let (Ok(v), Some(cert)) = (peer_outcome(ssl), ssl.peer_certificate()) {
            ossl::set_certificate_name(&cert, &v.name);
        }
    }
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
    let verifier = config.verifier.current();
    match received_name(ssl) {
        Some(name) => Some(verifier.verify(&config.resolver, name, leaf, chain)),
        None if config.missing == MissingName::FromCertificate => {
            from_certificate(config, &verifier, leaf, chain)
        }
        None => None,
    }
}

/// The identities in the certificate's SAN dNSNames, tried in turn until one authenticates,
/// all within one time budget; a certificate with more than [`MAX_CERT_IDENTITIES`] of them is
/// refused without a look-up (each costs DNS work, and the peer chooses how many there are).
fn from_certificate(
    config: &ClientIdServer,
    verifier: &ClientVerifier,
    leaf: &X509,
    chain: &[X509],
) -> Option<ClientVerification> {
    let names = identities_in_certificate(leaf);
    if names.len() > MAX_CERT_IDENTITIES {
        let first = format!("{} (and {} more)", names[0], names.len() - 1);
        let mut v = ClientVerification::refused(
            &first,
            Refusal::TooManyIdentities {
                found: names.len(),
                limit: MAX_CERT_IDENTITIES,
            },
        );
        v.form = Some(names[0].form());
        return Some(v);
    }
    let deadline = Instant::now() + verifier.time_budget();
    let mut last = None;
    for name in &names {
        let v = verifier.verify_name(&config.resolver, name, leaf, chain, deadline);
        if v.authenticated() {
            return Some(v);
        }
        last = Some(v);
    }
    last
}

/// `opaque ClientName<1..255>`: one length byte, then the name.
#[doc(hidden)]
pub fn encode(name: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(name.len() + 1);
    body.push(name.len() as u8);
    body.extend_from_slice(name);
    body
}

#[doc(hidden)]
pub fn decode(data: &[u8]) -> Option<String> {
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
