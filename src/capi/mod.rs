//! The C API of the DANE half: handles holding a resolver and its cache (one of their own, or
//! the process-wide one of [`iotsafe_dane_shared`]), and functions that work on the
//! application's own OpenSSL objects.
//!
//! Conventions: functions return 1 on success (or "authenticated"), 0 on a refusal, -1 on an
//! error; [`iotsafe_dane_last_error`] explains the last 0 or -1 of the calling thread. No Rust
//! panic crosses this boundary: each body runs under `catch_unwind` and a panic becomes -1.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use foreign_types::ForeignTypeRef;
use openssl::ssl::{SslContextBuilder, SslRef};
use openssl::stack::StackRef;
use openssl::x509::{X509Ref, X509};

use crate::dane::client::ClientVerifier;
use crate::dane::clientid_ext::{self, ClientIdServer, MissingName, SharedVerifier};
use crate::dane::name::{DeviceName, DomainName};
use crate::dane::resolver::{Resolver, ResolverConfig, TrustAnchor};
use crate::dane::server::{ContextDane, Policy, ServerTlsa};

/// Policy value: no secure usable TLSA records means failure.
pub const IOTSAFE_DANE_REQUIRE: c_int = 0;
/// Policy value: no secure usable TLSA records means ordinary PKIX.
pub const IOTSAFE_DANE_OPPORTUNISTIC: c_int = 1;

/// Missing `dane_clientid` name: abort the handshake.
pub const IOTSAFE_DANE_CLIENTID_REFUSE: c_int = 0;
/// Missing name: take DANE identities from the certificate's SAN dNSNames (at most 8; a
/// certificate naming more is refused; all their look-ups within one 10 s DNS budget).
pub const IOTSAFE_DANE_CLIENTID_FROM_CERT: c_int = 1;
/// Missing name: complete the handshake without an identity.
pub const IOTSAFE_DANE_CLIENTID_OPTIONAL: c_int = 2;

/// The default `dane_clientid` code point (private use, until IANA assigns one).
pub const IOTSAFE_DANE_CLIENTID_DEFAULT: u16 = 0xFFDA;
const _: () = assert!(IOTSAFE_DANE_CLIENTID_DEFAULT == clientid_ext::DEFAULT_CODE_POINT);

/// Opaque handle: the resolver (with its cache) and the device-verification settings.
pub struct IotsafeDane {
    resolver: Arc<Resolver>,
    /// What the setters set; behind a lock because handshakes on other threads read the handle
    /// while a setter runs.
    settings: Mutex<Settings>,
    /// Built from `settings`, shared with the contexts configured from this handle, so that a
    /// setting changed later applies to their next handshakes too.
    verifier: SharedVerifier,
}

#[derive(Default)]
struct Settings {
    allowed: Vec<String>,
    ca_file: Option<PathBuf>,
}

impl IotsafeDane {
    fn change_settings(&self, change: impl FnOnce(&mut Settings)) {
        let mut settings = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut settings);
        self.verifier.replace(ClientVerifier::new(
            settings.allowed.clone(),
            settings.ca_file.clone(),
        ));
    }
}

/// An empty C string (a `c""` literal would not parse for cbindgen).
static NO_ERROR: [c_char; 1] = [0];

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
}

/// Runs `body`, turning `Err` and panics into -1 with the last error set.
fn guard(body: impl FnOnce() -> Result<c_int, String>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(rc)) => rc,
        Ok(Err(msg)) => {
            set_error(&msg);
            -1
        }
        Err(_) => {
            set_error("internal error (panic) in iotsafe-dane");
            -1
        }
    }
}

/// A refusal: 0 with the reason as last error.
fn refuse(msg: String) -> Result<c_int, String> {
    set_error(&msg);
    Ok(0)
}

/// # Safety
/// `s` must be NULL or a NUL-terminated string.
unsafe fn opt_str<'a>(s: *const c_char) -> Result<Option<&'a str>, String> {
    if s.is_null() {
        return Ok(None);
    }
    // SAFETY: a NUL-terminated string (the function's contract).
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map(Some)
        .map_err(|_| "string argument is not UTF-8".to_string())
}

/// # Safety
/// As [`opt_str`].
unsafe fn req_str<'a>(s: *const c_char, what: &str) -> Result<&'a str, String> {
    // SAFETY: the same contract.
    unsafe { opt_str(s) }?.ok_or_else(|| format!("{what} is NULL"))
}

fn handle<'a>(d: *const IotsafeDane) -> Result<&'a IotsafeDane, String> {
    // SAFETY: callers pass a pointer from iotsafe_dane_new (or NULL, refused here).
    unsafe { d.as_ref() }.ok_or_else(|| "iotsafe_dane handle is NULL".to_string())
}

/// The last error message of the calling thread (empty when none). Valid until the next call
/// into this library on the same thread.
#[no_mangle]
pub extern "C" fn iotsafe_dane_last_error() -> *const c_char {
    // Only while the thread is being torn down can there be no thread-local left.
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(NO_ERROR.as_ptr())
}

/// Creates a handle with a resolver (and cache) of its own. `resolver`: "ADDR:PORT" of the DNS
/// server asked for every name (NULL: 127.0.0.1:53). `trust_anchor_file`: root DNSKEY/DS lines
/// (NULL: the IANA root keys). Returns NULL on error (see [`iotsafe_dane_last_error`]).
///
/// # Safety
/// Both arguments must be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_new(
    resolver: *const c_char,
    trust_anchor_file: *const c_char,
) -> *mut IotsafeDane {
    // SAFETY: the arguments as this function's contract says.
    unsafe {
        new_handle(resolver, trust_anchor_file, |key| {
            Resolver::new(key.config()?)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
    }
}

/// Creates a handle on the process-wide resolver for this `resolver` and `trust_anchor_file`
/// (as [`iotsafe_dane_new`] reads them): every handle made by this function with the same two
/// arguments shares one resolver and its cache, whoever made it (a broker plugin, the preload
/// shim, the application), so a record is looked up once per process and a cache cleared
/// through one handle is cleared for all. The allowed domains and CA file stay per handle. The
/// resolver lives while a handle on it does. Free each handle with [`iotsafe_dane_free`].
///
/// # Safety
/// As [`iotsafe_dane_new`].
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_shared(
    resolver: *const c_char,
    trust_anchor_file: *const c_char,
) -> *mut IotsafeDane {
    // SAFETY: the arguments as this function's contract says.
    unsafe { new_handle(resolver, trust_anchor_file, shared_resolver) }
}

/// What makes two resolvers the same: the server asked and where the trust anchor comes from.
#[derive(Clone, PartialEq, Eq)]
struct ResolverKey {
    server: std::net::SocketAddr,
    trust_anchor_file: Option<PathBuf>,
}

impl ResolverKey {
    /// # Safety
    /// As [`iotsafe_dane_new`].
    unsafe fn parse(
        resolver: *const c_char,
        trust_anchor_file: *const c_char,
    ) -> Result<Self, String> {
        // SAFETY: NULL or NUL-terminated (the caller's contract).
        let server = match unsafe { opt_str(resolver) }? {
            Some(s) => s
                .parse()
                .map_err(|_| format!("resolver {s:?} is not ADDR:PORT"))?,
            None => std::net::SocketAddr::from(([127, 0, 0, 1], 53)),
        };
        // SAFETY: as above.
        let trust_anchor_file = unsafe { opt_str(trust_anchor_file) }?.map(PathBuf::from);
        Ok(ResolverKey {
            server,
            trust_anchor_file,
        })
    }

    fn config(&self) -> Result<ResolverConfig, String> {
        let anchor = match &self.trust_anchor_file {
            Some(path) => TrustAnchor::from_file(path).map_err(|e| e.to_string())?,
            None => TrustAnchor::iana_root(),
        };
        Ok(ResolverConfig::new(self.server, anchor))
    }
}

/// The resolvers [`iotsafe_dane_shared`] hands out, held weakly: the last handle on one ends it.
static SHARED_RESOLVERS: Mutex<Vec<(ResolverKey, std::sync::Weak<Resolver>)>> =
    Mutex::new(Vec::new());

fn shared_resolver(key: &ResolverKey) -> Result<Arc<Resolver>, String> {
    let mut shared = SHARED_RESOLVERS.lock().unwrap_or_else(|p| p.into_inner());
    shared.retain(|(_, resolver)| resolver.strong_count() > 0);
    if let Some(resolver) = shared
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, resolver)| resolver.upgrade())
    {
        return Ok(resolver);
    }
    let resolver = Arc::new(Resolver::new(key.config()?).map_err(|e| e.to_string())?);
    shared.push((key.clone(), Arc::downgrade(&resolver)));
    Ok(resolver)
}

/// # Safety
/// As [`iotsafe_dane_new`].
unsafe fn new_handle(
    resolver: *const c_char,
    trust_anchor_file: *const c_char,
    make_resolver: impl FnOnce(&ResolverKey) -> Result<Arc<Resolver>, String>,
) -> *mut IotsafeDane {
    let mut out: *mut IotsafeDane = std::ptr::null_mut();
    guard(|| {
        // SAFETY: the arguments as the caller's contract says.
        let key = unsafe { ResolverKey::parse(resolver, trust_anchor_file) }?;
        out = Box::into_raw(Box::new(IotsafeDane {
            resolver: make_resolver(&key)?,
            settings: Mutex::default(),
            verifier: ClientVerifier::new(Vec::new(), None).into(),
        }));
        Ok(1)
    });
    out
}

/// Frees a handle (NULL is fine). Contexts configured with it keep their own reference to the
/// resolver.
///
/// # Safety
/// `d` must come from [`iotsafe_dane_new`] or [`iotsafe_dane_shared`] and not be used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_free(d: *mut IotsafeDane) {
    if !d.is_null() {
        // SAFETY: a handle from iotsafe_dane_new, freed once (the function's contract).
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(d) })));
    }
}

/// Restricts device names to these domains (comma- or space-separated), checked before any DNS
/// query. NULL or "" allows every name; -1 (the list unchanged) when one is not a domain name.
/// Applies to the contexts already configured with `d` too, from their next handshake (and to
/// resuming sessions).
///
/// # Safety
/// `d` from [`iotsafe_dane_new`]; `domains` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_set_allowed_domains(
    d: *mut IotsafeDane,
    domains: *const c_char,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or NUL-terminated (the function's contract).
        let list = unsafe { opt_str(domains) }?.unwrap_or("");
        let allowed: Vec<String> = list
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        for domain in &allowed {
            DomainName::parse(domain).map_err(|e| format!("allowed domain: {e}"))?;
        }
        handle(d)?.change_settings(|s| s.allowed = allowed);
        Ok(1)
    })
}

/// CA certificates (PEM file) for the PKIX usages 0 and 1 of device records (NULL: the system
/// store). Applies to the contexts already configured with `d` too.
///
/// # Safety
/// `d` from [`iotsafe_dane_new`]; `path` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_set_ca_file(
    d: *mut IotsafeDane,
    path: *const c_char,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or NUL-terminated (the function's contract).
        let path = unsafe { opt_str(path) }?.map(PathBuf::from);
        handle(d)?.change_settings(|s| s.ca_file = path);
        Ok(1)
    })
}

/// Forgets every cached DNS answer of this handle's resolver (shared with the contexts
/// configured from it): the next handshakes, and resuming sessions, ask the DNS again. For an
/// operator who revokes a device and will not wait for its record's TTL.
///
/// # Safety
/// `d` from [`iotsafe_dane_new`].
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_clear_cache(d: *const IotsafeDane) -> c_int {
    guard(|| {
        handle(d)?.resolver.clear_cache();
        Ok(1)
    })
}

/// DNS queries sent by this handle's resolver so far (for tests and benchmarks).
///
/// # Safety
/// `d` from [`iotsafe_dane_new`].
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_queries_sent(d: *const IotsafeDane) -> u64 {
    catch_unwind(|| handle(d).map(|d| d.resolver.queries_sent()).unwrap_or(0)).unwrap_or(0)
}

/// Server authentication on one client connection: looks up `_<port>._tcp.<host>` and puts
/// the validated records on `ssl` (OpenSSL's DANE), or host-name PKIX checks when the policy
/// is opportunistic and the server has no DANE. Call before `SSL_connect`. Returns 0 when the
/// connection must not be made (bogus DNS, or no DANE under the require policy, or a `host`
/// that is not a plain host name: letters, digits and `-` labels, no escapes).
///
/// # Safety
/// `d` from [`iotsafe_dane_new`]; `ssl` a live client `SSL`; `host` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_ssl_enable(
    d: *const IotsafeDane,
    ssl: *mut openssl_sys::SSL,
    host: *const c_char,
    port: u16,
    policy: c_int,
) -> c_int {
    guard(|| {
        let d = handle(d)?;
        // SAFETY: NUL-terminated (the function's contract).
        let host = unsafe { req_str(host, "host") }?;
        if ssl.is_null() {
            return Err("ssl is NULL".into());
        }
        let policy = match policy {
            IOTSAFE_DANE_OPPORTUNISTIC => Policy::Opportunistic,
            _ => Policy::Require,
        };
        let tlsa = ServerTlsa::lookup(&d.resolver, host, port, policy);
        // SAFETY: a live SSL, not NULL (checked above).
        let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
        match tlsa.configure(ssl) {
            Ok(()) => Ok(1),
            Err(why) => refuse(why),
        }
    })
}

/// Server authentication on a whole client `SSL_CTX` (for libraries that create the `SSL`
/// objects themselves, e.g. libmosquitto through `MOSQ_OPT_SSL_CTX`): every connection made
/// from `ctx` looks up `_<port>._tcp.<SNI host>` when the server's certificate arrives and is
/// verified by those records (or by PKIX when the policy is opportunistic and the server has no
/// DANE). Peer verification is switched on. The library must set SNI (libmosquitto does).
/// Why a handshake was refused (no usable records, bogus DNS, no record matched) is kept as the
/// last error of the thread that ran the handshake.
///
/// # Safety
/// `d` from [`iotsafe_dane_new`]; `ctx` a live client `SSL_CTX`.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_ctx_enable_server_auth(
    d: *const IotsafeDane,
    ctx: *mut openssl_sys::SSL_CTX,
    port: u16,
    policy: c_int,
) -> c_int {
    guard(|| {
        let d = handle(d)?;
        if ctx.is_null() {
            return Err("ctx is NULL".into());
        }
        let policy = match policy {
            IOTSAFE_DANE_OPPORTUNISTIC => Policy::Opportunistic,
            _ => Policy::Require,
        };
        let dane = ContextDane {
            resolver: d.resolver.clone(),
            port,
            policy,
            on_refusal: Some(set_error),
        };
        // SAFETY: a live SSL_CTX, not NULL (checked above), borrowed without being freed.
        let mut builder = ManuallyDrop::new(unsafe { SslContextBuilder::from_ptr(ctx) });
        dane.install(&mut builder)?;
        Ok(1)
    })
}

/// Verifies a device certificate (`chain`: the certificates it sent after it, may be NULL)
/// against the TLSA records at `name`. 1: authenticated; 0: not (reason in the last error).
///
/// # Safety
/// `d` from [`iotsafe_dane_new`]; `cert` a live `X509`; `chain` NULL or a live
/// `STACK_OF(X509)`; `name` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_verify_client(
    d: *const IotsafeDane,
    cert: *mut openssl_sys::X509,
    chain: *mut openssl_sys::stack_st_X509,
    name: *const c_char,
) -> c_int {
    guard(|| {
        let d = handle(d)?;
        // SAFETY: NUL-terminated (the function's contract).
        let name = unsafe { req_str(name, "name") }?;
        if cert.is_null() {
            return Err("cert is NULL".into());
        }
        // SAFETY: a live X509, not NULL (checked above).
        let leaf = unsafe { X509Ref::from_ptr(cert) };
        let chain: Vec<X509> = if chain.is_null() {
            Vec::new()
        } else {
            // SAFETY: a live STACK_OF(X509), not NULL (checked above).
            unsafe { StackRef::<X509>::from_ptr(chain) }
                .iter()
                .map(|c| c.to_owned())
                .collect()
        };
        let v = d.verifier.current().verify(&d.resolver, name, leaf, &chain);
        if v.authenticated() {
            set_error("");
            Ok(1)
        } else {
            refuse(v.to_string())
        }
    })
}

/// Server side, on a whole `SSL_CTX` (for libraries that create the `SSL` objects themselves):
/// requests the `dane_clientid` extension, requires a client certificate and verifies it against
/// the TLSA records of the client's name in the handshake. `missing`: one of the
/// `IOTSAFE_DANE_CLIENTID_*` values; with `IOTSAFE_DANE_CLIENTID_REFUSE`, TLS below 1.3 is
/// refused too. `code_point` 0 means the default.
///
/// An authenticated client is reported as verified: `SSL_get_verify_result` returns
/// `X509_V_OK`. The settings of `d` are read at each handshake, so later
/// [`iotsafe_dane_set_allowed_domains`] and [`iotsafe_dane_set_ca_file`] calls apply.
/// Resumption: the context's session cache is switched off and its session-ticket callbacks
/// are taken, so that sessions resume only by ticket and a ticket only while the identity in it
/// still verifies against the DNS as it is now (a removed record ends resumption when the
/// cached answer expires, as it ends full handshakes). A session resumed otherwise (the
/// application switched the session cache back on, or set its own session callbacks) has no
/// identity and a verify result of `X509_V_ERR_APPLICATION_VERIFICATION`.
///
/// The context's info callback is taken too, to forget what an earlier handshake on the same
/// `SSL` learnt (after `SSL_clear`, or a renegotiation); an info callback set before this call
/// is still called. One set afterwards makes every client refused. Do not set the context's
/// verify callback, session-ticket callbacks, session cache mode or info callback afterwards,
/// nor move its `SSL`s to another context.
///
/// A context is configured once: a second call on it returns -1 (also with another code
/// point). Concurrent calls configuring the same context are serialised.
///
/// # Safety
/// `d` from [`iotsafe_dane_new`]; `ctx` a live server `SSL_CTX`.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_ctx_enable_clientid_server(
    d: *const IotsafeDane,
    ctx: *mut openssl_sys::SSL_CTX,
    code_point: u16,
    missing: c_int,
) -> c_int {
    guard(|| {
        let d = handle(d)?;
        if ctx.is_null() {
            return Err("ctx is NULL".into());
        }
        let missing = match missing {
            IOTSAFE_DANE_CLIENTID_FROM_CERT => MissingName::FromCertificate,
            IOTSAFE_DANE_CLIENTID_OPTIONAL => MissingName::Unauthenticated,
            _ => MissingName::Refuse,
        };
        let config = Arc::new(ClientIdServer {
            resolver: d.resolver.clone(),
            verifier: d.verifier.clone(),
            code_point: code_point_or_default(code_point),
            missing,
            tls13_only: missing == MissingName::Refuse,
        });
        // The context belongs to the caller: borrow it as a builder without freeing it.
        // SAFETY: a live SSL_CTX, not NULL (checked above).
        let mut builder = ManuallyDrop::new(unsafe { SslContextBuilder::from_ptr(ctx) });
        clientid_ext::enable_server(&mut builder, config)?;
        Ok(1)
    })
}

/// Client side, on a whole `SSL_CTX`: answer a server's `dane_clientid` request with `name`
/// (a host name in one of the DANE client forms; -1 otherwise).
///
/// # Safety
/// `ctx` a live client `SSL_CTX`; `name` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_ctx_enable_clientid_client(
    ctx: *mut openssl_sys::SSL_CTX,
    name: *const c_char,
    code_point: u16,
) -> c_int {
    guard(|| {
        // SAFETY: NUL-terminated (the function's contract).
        let name = unsafe { req_str(name, "name") }?;
        DeviceName::parse(name).map_err(|e| format!("client name: {e}"))?;
        if ctx.is_null() {
            return Err("ctx is NULL".into());
        }
        // SAFETY: a live SSL_CTX, not NULL (checked above).
        let mut builder = ManuallyDrop::new(unsafe { SslContextBuilder::from_ptr(ctx) });
        clientid_ext::enable_client(&mut builder, name, code_point_or_default(code_point))?;
        Ok(1)
    })
}

/// After a handshake on a server `SSL` configured by
/// [`iotsafe_dane_ctx_enable_clientid_server`]: copies the authenticated device name
/// (NUL-terminated) into `buf`. Returns 1, or 0 when the peer has no authenticated DANE
/// identity (the last error then says why its verification failed, also after a refused
/// handshake), or -1 when `buf` is too small.
///
/// # Safety
/// `ssl` a live `SSL`; `buf` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_peer_identity(
    ssl: *const openssl_sys::SSL,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard(|| {
        if ssl.is_null() || buf.is_null() {
            return Err("ssl or buf is NULL".into());
        }
        // SAFETY: a live SSL, not NULL (checked above).
        let ssl = unsafe { SslRef::from_ptr(ssl as *mut _) };
        let v = match clientid_ext::peer_identity(ssl) {
            Some(v) if v.authenticated() => v,
            // Why the client was refused, for the application's log.
            Some(v) => return refuse(v.to_string()),
            None if !clientid_ext::handshake_tracked(ssl) => {
                return refuse(
                    "no DANE verification ran on this SSL (was the context's info callback \
                     replaced after iotsafe_dane_ctx_enable_clientid_server? Then every client \
                     is refused)"
                        .into(),
                )
            }
            None => return refuse("the peer has no authenticated DANE identity".into()),
        };
        let name = v.name.as_bytes();
        if name.len() + 1 > len {
            return Err(format!("buffer of {len} bytes too small for {}", v.name));
        }
        // SAFETY: `buf` has `len` bytes (the function's contract), checked to hold the name
        // and its NUL.
        unsafe {
            std::ptr::copy_nonoverlapping(name.as_ptr(), buf as *mut u8, name.len());
            *buf.add(name.len()) = 0;
        }
        Ok(1)
    })
}

fn code_point_or_default(code_point: u16) -> u16 {
    if code_point == 0 {
        clientid_ext::DEFAULT_CODE_POINT
    } else {
        code_point
    }
}
