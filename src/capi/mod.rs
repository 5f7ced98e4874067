//! The C API of the DANE half: handles holding a resolver and its cache (one of their own, or
//! the process-wide one of [`iotsafe_dane_shared`]), and functions that work on the
//! application's own OpenSSL objects.
//!
//! Conventions: functions return 1 on success (or "authenticated"), 0 on a refusal, -1 on an
//! error; [`iotsafe_dane_last_error`] explains the last 0 or -1 of the calling thread. No Rust
//! panic crosses this boundary: each body runs under `catch_unwind` and a panic becomes -1.
//!
//! Why a peer was refused is also a number, [`IotsafeDaneReason`], for programs that decide by
//! it: [`iotsafe_dane_last_reason`] on the connection's `SSL`.

use std::cell::{Cell, RefCell};
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
use crate::dane::name::{DeviceName, DomainName, OwnerForm};
use crate::dane::refusal::Refusal;
use crate::dane::resolver::{Proof, Resolver, ResolverConfig, TrustAnchor, Validation};
use crate::dane::server::{self, ContextDane, Policy, ServerTlsa};

/// Policy value: no secure usable TLSA records means failure.
pub const IOTSAFE_DANE_REQUIRE: c_int = 0;
/// Policy value: no secure usable TLSA records means ordinary PKIX.
pub const IOTSAFE_DANE_OPPORTUNISTIC: c_int = 1;

/// Resolver flag ([`iotsafe_dane_shared_ex`]): take the AD bit of the validating resolver
/// given as `resolver`, which must be on loopback, instead of validating in-process.
pub const IOTSAFE_DANE_TRUST_AD: u32 = 1;
/// The longest whole look-up time-out [`iotsafe_dane_shared_ex`] accepts (ms).
pub const IOTSAFE_DANE_MAX_LOOKUP_TIMEOUT_MS: u32 = 60_000;

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

/// Why a server or a device was not authenticated. The numbers never change; new reasons get
/// new numbers. [`iotsafe_dane_reason_name`] gives each one's name.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IotsafeDaneReason {
    /// Authenticated (or, for a connection, nothing refused it).
    Ok = 0,
    /// The name is not a host name, or not in a DANE client form (no DNS query made).
    BadName = 1,
    /// The device name is outside the allowed domains (no DNS query made).
    NotAllowed = 2,
    /// The certificate names too many DANE identities to look up (no DNS query made).
    TooManyIdentities = 3,
    /// The connection has no SNI host name to look the server up by.
    NoServerName = 4,
    /// A DNS look-up got no answer (time-out, SERVFAIL, the time budget spent).
    DnsFailure = 5,
    /// An answer failed DNSSEC validation (an attack, or a broken zone).
    Bogus = 6,
    /// An answer whose proof is indeterminate.
    Indeterminate = 7,
    /// An answer from an unsigned zone: provably insecure, it proves nothing.
    Insecure = 8,
    /// Securely, there are no TLSA records.
    NoRecords = 9,
    /// Secure TLSA records, none of them usable.
    NoneUsable = 10,
    /// TLSA records, none of which matches the presented certificate.
    NoMatch = 11,
    /// The certificate failed the TLS library's verification (PKIX path, host name).
    CertificateRejected = 12,
    /// The peer has no DANE identity (it sent no name, and none was taken from its certificate).
    NoIdentity = 13,
    /// No DANE verification ran on this connection.
    NotChecked = 14,
    /// The connection could not be set up for the verification.
    TlsSetup = 15,
    /// Not a refusal: the call failed (-1); see [`iotsafe_dane_last_error`].
    Error = 16,
}

impl IotsafeDaneReason {
    /// Every reason, in the order of their numbers.
    const ALL: [IotsafeDaneReason; 17] = [
        Self::Ok,
        Self::BadName,
        Self::NotAllowed,
        Self::TooManyIdentities,
        Self::NoServerName,
        Self::DnsFailure,
        Self::Bogus,
        Self::Indeterminate,
        Self::Insecure,
        Self::NoRecords,
        Self::NoneUsable,
        Self::NoMatch,
        Self::CertificateRejected,
        Self::NoIdentity,
        Self::NotChecked,
        Self::TlsSetup,
        Self::Error,
    ];

    fn of(refusal: &Refusal) -> Self {
        match refusal {
            Refusal::BadName(_) => Self::BadName,
            Refusal::NotAllowed { .. } => Self::NotAllowed,
            Refusal::TooManyIdentities { .. } => Self::TooManyIdentities,
            Refusal::NoServerName => Self::NoServerName,
            Refusal::DnsFailure(_) => Self::DnsFailure,
            Refusal::Bogus(_) => Self::Bogus,
            Refusal::Indeterminate(_) => Self::Indeterminate,
            Refusal::Insecure(_) => Self::Insecure,
            // Insecure at one owner name and securely absent at another: the weaker proof.
            Refusal::NoSecureRecords(lookups)
                if lookups.iter().any(|l| l.proof == Proof::Insecure) =>
            {
                Self::Insecure
            }
            Refusal::NoSecureRecords(_) => Self::NoRecords,
            Refusal::NoneUsable { .. } => Self::NoneUsable,
            Refusal::NoMatch(_) => Self::NoMatch,
            Refusal::CertificateRejected(result)
                if result.as_raw() == openssl_sys::X509_V_ERR_DANE_NO_MATCH =>
            {
                Self::NoMatch
            }
            Refusal::CertificateRejected(_) => Self::CertificateRejected,
            Refusal::NoIdentity => Self::NoIdentity,
            Refusal::NotChecked => Self::NotChecked,
            Refusal::TlsSetup(_) => Self::TlsSetup,
            Refusal::DaneRequired(why) => Self::of(why),
        }
    }

    fn of_outcome<T>(outcome: Result<T, Refusal>) -> Self {
        outcome.map_or_else(|why| Self::of(&why), |_| Self::Ok)
    }

    /// The name, NUL-terminated (no `c""` literal: cbindgen 0.24 cannot parse them).
    fn name(self) -> &'static [u8] {
        match self {
            Self::Ok => b"OK\0",
            Self::BadName => b"BAD_NAME\0",
            Self::NotAllowed => b"NOT_ALLOWED\0",
            Self::TooManyIdentities => b"TOO_MANY_IDENTITIES\0",
            Self::NoServerName => b"NO_SERVER_NAME\0",
            Self::DnsFailure => b"DNS_FAILURE\0",
            Self::Bogus => b"BOGUS\0",
            Self::Indeterminate => b"INDETERMINATE\0",
            Self::Insecure => b"INSECURE\0",
            Self::NoRecords => b"NO_RECORDS\0",
            Self::NoneUsable => b"NONE_USABLE\0",
            Self::NoMatch => b"NO_MATCH\0",
            Self::CertificateRejected => b"CERTIFICATE_REJECTED\0",
            Self::NoIdentity => b"NO_IDENTITY\0",
            Self::NotChecked => b"NOT_CHECKED\0",
            Self::TlsSetup => b"TLS_SETUP\0",
            Self::Error => b"ERROR\0",
        }
    }
}

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
    /// Until a call or handshake of this thread decided something: nothing was checked.
    static LAST_REASON: Cell<IotsafeDaneReason> =
        const { Cell::new(IotsafeDaneReason::NotChecked) };
}

fn set_error(msg: &str) {
    let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
}

fn set_reason(reason: IotsafeDaneReason) {
    // Only while the thread is being torn down can there be no thread-local left.
    let _ = LAST_REASON.try_with(|r| r.set(reason));
}

/// A context-level check started (NOT_CHECKED until it decides) or passed (OK).
fn set_checked(why: Option<&Refusal>) {
    set_reason(why.map_or(IotsafeDaneReason::Ok, IotsafeDaneReason::of));
}

/// A refusal reported in a handshake callback: the thread's last error and reason.
fn set_refusal(msg: &str, why: &Refusal) {
    set_error(msg);
    set_reason(IotsafeDaneReason::of(why));
}

/// Runs `body`, turning `Err` and panics into -1 with the last error set.
fn guard(body: impl FnOnce() -> Result<c_int, String>) -> c_int {
    let failed = |msg: &str| {
        set_error(msg);
        set_reason(IotsafeDaneReason::Error);
        -1
    };
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(rc)) => rc,
        Ok(Err(msg)) => failed(&msg),
        Err(_) => failed("internal error (panic) in iotsafe-dane"),
    }
}

/// A refusal: 0 with the message as last error and `why` as last reason.
fn refuse(msg: String, why: &Refusal) -> Result<c_int, String> {
    set_refusal(&msg, why);
    Ok(0)
}

/// Authenticated: 1, no last error, reason OK.
fn accept() -> Result<c_int, String> {
    set_error("");
    set_reason(IotsafeDaneReason::Ok);
    Ok(1)
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
    unsafe { new_handle(resolver, trust_anchor_file, |spec| spec.resolver()) }
}

/// Creates a handle on the process-wide resolver for this `resolver` and `trust_anchor_file`
/// (as [`iotsafe_dane_new`] reads them): every handle made by this function with the same
/// resolver address and the same trust anchor (the file's text as read now, not its name)
/// shares one resolver and its cache, whoever made it (a broker plugin, the preload shim, the
/// application), so a record is looked up once per process and a cache cleared through one
/// handle is cleared for all. A trust anchor file replaced in place gets a resolver of its own. The allowed domains and CA file stay per handle. The
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

/// [`iotsafe_dane_shared`] with resolver options. `flags`: 0 or [`IOTSAFE_DANE_TRUST_AD`]
/// (then `trust_anchor_file` must be NULL). `lookup_timeout_ms`: the longest a whole look-up
/// (chain of trust included) may take, at most [`IOTSAFE_DANE_MAX_LOOKUP_TIMEOUT_MS`]; 0 means
/// the default, 5000. Handles share a resolver only when all four arguments agree (the trust
/// anchor by its text). NULL on error: an unknown flag, a time-out out of range, the AD bit
/// from a resolver not on loopback (see [`iotsafe_dane_last_error`]).
///
/// # Safety
/// `resolver` and `trust_anchor_file` as for [`iotsafe_dane_new`].
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_shared_ex(
    resolver: *const c_char,
    trust_anchor_file: *const c_char,
    flags: u32,
    lookup_timeout_ms: u32,
) -> *mut IotsafeDane {
    let options = ResolverOptions {
        flags,
        lookup_timeout_ms,
    };
    // SAFETY: the arguments as this function's contract says.
    unsafe { new_handle_with(resolver, trust_anchor_file, options, shared_resolver) }
}

/// What a handle's resolver is made from. Two shared handles share a resolver when the server
/// asked and the trust anchor's text are the same: the text as read now, not the file's name,
/// so a trust anchor file replaced in place (a root key roll-over) gets a resolver of its own,
/// and one path that names another file after a `chdir` is not taken for the first.
struct ResolverSpec {
    server: std::net::SocketAddr,
    /// The trust anchor file and its text (None: the IANA root keys, or the AD bit).
    anchor: Option<(PathBuf, String)>,
    trust_ad: bool,
    lookup_timeout: Option<std::time::Duration>,
}

/// The numeric arguments of [`iotsafe_dane_shared_ex`], as the caller gave them.
#[derive(Clone, Copy, Default)]
struct ResolverOptions {
    flags: u32,
    lookup_timeout_ms: u32,
}

impl ResolverSpec {
    /// # Safety
    /// As [`iotsafe_dane_new`].
    unsafe fn parse(
        resolver: *const c_char,
        trust_anchor_file: *const c_char,
        options: ResolverOptions,
    ) -> Result<Self, String> {
        if options.flags & !IOTSAFE_DANE_TRUST_AD != 0 {
            return Err(format!("unknown resolver flags {:#x}", options.flags));
        }
        let trust_ad = options.flags & IOTSAFE_DANE_TRUST_AD != 0;
        if trust_ad && !trust_anchor_file.is_null() {
            return Err("a trust anchor file and IOTSAFE_DANE_TRUST_AD exclude each other".into());
        }
        let lookup_timeout = match options.lookup_timeout_ms {
            0 => None,
            ms if ms <= IOTSAFE_DANE_MAX_LOOKUP_TIMEOUT_MS => {
                Some(std::time::Duration::from_millis(ms.into()))
            }
            ms => {
                return Err(format!(
                    "look-up time-out {ms} ms is above {IOTSAFE_DANE_MAX_LOOKUP_TIMEOUT_MS} ms"
                ))
            }
        };
        // SAFETY: NULL or NUL-terminated (the caller's contract).
        let server = match unsafe { opt_str(resolver) }? {
            Some(s) => s
                .parse()
                .map_err(|_| format!("resolver {s:?} is not ADDR:PORT"))?,
            None => std::net::SocketAddr::from(([127, 0, 0, 1], 53)),
        };
        // SAFETY: as above.
        let anchor = match unsafe { opt_str(trust_anchor_file) }? {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("trust anchor file {path}: {e}"))?;
                Some((PathBuf::from(path), text))
            }
            None => None,
        };
        Ok(ResolverSpec {
            server,
            anchor,
            trust_ad,
            lookup_timeout,
        })
    }

    fn same_resolver(&self, other: &ResolverSpec) -> bool {
        self.server == other.server
            && self.anchor_text() == other.anchor_text()
            && self.trust_ad == other.trust_ad
            && self.lookup_timeout == other.lookup_timeout
    }

    fn anchor_text(&self) -> Option<&str> {
        self.anchor.as_ref().map(|(_, text)| text.as_str())
    }

    fn resolver(&self) -> Result<Arc<Resolver>, String> {
        let anchor = match &self.anchor {
            Some((path, text)) => text
                .parse::<TrustAnchor>()
                .map_err(|e| format!("{}: {e}", path.display()))?,
            None => TrustAnchor::iana_root(),
        };
        let mut config = ResolverConfig::new(self.server, anchor);
        if self.trust_ad {
            config.validation = Validation::TrustAdBit;
        }
        if let Some(timeout) = self.lookup_timeout {
            config.lookup_timeout = timeout;
            config.query_timeout = config.query_timeout.min(timeout);
        }
        Resolver::new(config)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

/// The resolvers [`iotsafe_dane_shared`] hands out, held weakly: the last handle on one ends it.
static SHARED_RESOLVERS: Mutex<Registry> = Mutex::new(Vec::new());

fn shared_resolver(spec: ResolverSpec) -> Result<Arc<Resolver>, String> {
    if let Some(resolver) = live_resolver(&mut registry(), &spec) {
        return Ok(resolver);
    }
    // Made without the lock: a resolver fetches its trust anchor's keys (up to the look-up
    // time-out), which must not hold every other caller (or a forked child) waiting.
    let made = spec.resolver()?;
    let mut shared = registry();
    // Another caller may have made one meanwhile: one resolver per specification still.
    if let Some(resolver) = live_resolver(&mut shared, &spec) {
        return Ok(resolver);
    }
    shared.push((spec, Arc::downgrade(&made)));
    Ok(made)
}

type Registry = Vec<(ResolverSpec, std::sync::Weak<Resolver>)>;

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    SHARED_RESOLVERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The live resolver made for `spec`, forgetting those no handle holds any more.
fn live_resolver(shared: &mut Registry, spec: &ResolverSpec) -> Option<Arc<Resolver>> {
    shared.retain(|(_, resolver)| resolver.strong_count() > 0);
    shared
        .iter()
        .find(|(s, _)| s.same_resolver(spec))
        .and_then(|(_, resolver)| resolver.upgrade())
}

/// # Safety
/// As [`iotsafe_dane_new`].
unsafe fn new_handle(
    resolver: *const c_char,
    trust_anchor_file: *const c_char,
    make_resolver: impl FnOnce(ResolverSpec) -> Result<Arc<Resolver>, String>,
) -> *mut IotsafeDane {
    let defaults = ResolverOptions::default();
    // SAFETY: the arguments as the caller's contract says.
    unsafe { new_handle_with(resolver, trust_anchor_file, defaults, make_resolver) }
}

/// # Safety
/// As [`iotsafe_dane_new`].
unsafe fn new_handle_with(
    resolver: *const c_char,
    trust_anchor_file: *const c_char,
    options: ResolverOptions,
    make_resolver: impl FnOnce(ResolverSpec) -> Result<Arc<Resolver>, String>,
) -> *mut IotsafeDane {
    let mut out: *mut IotsafeDane = std::ptr::null_mut();
    guard(|| {
        // SAFETY: the arguments as the caller's contract says.
        let spec = unsafe { ResolverSpec::parse(resolver, trust_anchor_file, options) }?;
        out = Box::into_raw(Box::new(IotsafeDane {
            resolver: make_resolver(spec)?,
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
/// Resumption: offer a session (`SSL_set_session`) before this call. It is kept only when a
/// DANE-EE record designates the certificate its server had, else dropped for a full
/// handshake. A session offered after this call is resumed without that check, and
/// [`iotsafe_dane_last_reason`] reports `NOT_CHECKED` for the connection.
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
            Ok(()) => accept(),
            Err(why) => refuse(tlsa.refusal_message(&why), &why),
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
/// Resumption: a session offered with `SSL_set_session` is resumed only when, as the DNS says
/// when the handshake starts, a DANE-EE record at the server's name designates the certificate
/// its server had; otherwise the session is dropped and the handshake is a full one (so a
/// changed or removed record ends resumption within its TTL). For this the context's info
/// callback is taken; one set before is still called, one set afterwards (on the context, or
/// on one `SSL` with `SSL_set_info_callback`, which OpenSSL then calls instead of the
/// context's) leaves resumed sessions unchecked: the handshake succeeds and
/// [`iotsafe_dane_last_reason`] reports it `NOT_CHECKED`. Calling this twice on one context
/// fails (0) and leaves the first configuration in place.
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
            on_refusal: Some(set_refusal),
            on_checked: Some(set_checked),
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
    // SAFETY: the arguments as this function's contract says (the same contract).
    unsafe { iotsafe_dane_verify_client_ttl(d, cert, chain, name, std::ptr::null_mut()) }
}

/// Identity form `_<service>.<client-domain>` (for [`iotsafe_dane_cert_identity`]).
pub const IOTSAFE_DANE_FORM_SERVICE: u32 = 1;
/// Identity form `<device-id>._device.<org-domain>`.
pub const IOTSAFE_DANE_FORM_DEVICE: u32 = 2;
/// Identity form: the plain `<client-domain>`.
pub const IOTSAFE_DANE_FORM_PLAIN: u32 = 4;
const ALL_FORMS: u32 =
    IOTSAFE_DANE_FORM_SERVICE | IOTSAFE_DANE_FORM_DEVICE | IOTSAFE_DANE_FORM_PLAIN;

/// [`iotsafe_dane_verify_client`], and how long its verdict holds: `valid_for_seconds` (may be
/// NULL) receives the seconds until the DNS answers it relied on leave the cache (rounded up;
/// 0 when none was kept). Past that, the same call asks the DNS again: a broker re-validates a
/// live session then, to notice a removed or changed record.
///
/// # Safety
/// As [`iotsafe_dane_verify_client`]; `valid_for_seconds` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_verify_client_ttl(
    d: *const IotsafeDane,
    cert: *mut openssl_sys::X509,
    chain: *mut openssl_sys::stack_st_X509,
    name: *const c_char,
    valid_for_seconds: *mut u32,
) -> c_int {
    // SAFETY: the arguments as this function's contract says (the same contract).
    unsafe { verify_client_by(d, cert, chain, name, valid_for_seconds, None) }
}

/// [`iotsafe_dane_verify_client_ttl`] under a caller's deadline: for a caller that tries
/// several names of one certificate within one time budget.
///
/// # Safety
/// As [`iotsafe_dane_verify_client_ttl`].
unsafe fn verify_client_by(
    d: *const IotsafeDane,
    cert: *mut openssl_sys::X509,
    chain: *mut openssl_sys::stack_st_X509,
    name: *const c_char,
    valid_for_seconds: *mut u32,
    deadline: Option<std::time::Instant>,
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
        let verifier = d.verifier.current();
        let v = match deadline {
            Some(deadline) => verifier.verify_by(&d.resolver, name, leaf, &chain, deadline),
            None => verifier.verify(&d.resolver, name, leaf, &chain),
        };
        // SAFETY: NULL or writable (the function's contract).
        if let Some(out) = unsafe { valid_for_seconds.as_mut() } {
            *out = whole_seconds_up(v.valid_for);
        }
        match &v.result {
            Ok(_) => accept(),
            Err(why) => refuse(v.to_string(), why),
        }
    })
}

fn whole_seconds_up(d: std::time::Duration) -> u32 {
    let up = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(up).unwrap_or(u32::MAX)
}

/// The `index`-th (from 0) DANE client identity `cert` names: its SAN dNSNames that are host
/// names of one of the `forms` (`IOTSAFE_DANE_FORM_*` bits), in the certificate's order,
/// lower case, no trailing dot. For a broker that sees only the certificate (no
/// `dane_clientid` extension) and verifies each name with [`iotsafe_dane_verify_client`].
/// SAN entries that are no such names are skipped; the CN is never an identity. Returns 1 with
/// the name in `buf`, 0 when there are fewer names, -1 on an error (`buf` too small, `forms`
/// without a known bit).
///
/// # Safety
/// `cert` a live `X509`; `buf` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_cert_identity(
    cert: *const openssl_sys::X509,
    forms: u32,
    index: usize,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard(|| {
        if cert.is_null() || buf.is_null() {
            return Err("cert or buf is NULL".into());
        }
        if forms & ALL_FORMS == 0 || forms & !ALL_FORMS != 0 {
            return Err(format!(
                "identity forms {forms:#x}: not a set of IOTSAFE_DANE_FORM_* bits"
            ));
        }
        // SAFETY: a live X509, not NULL (checked above); only read.
        let cert = unsafe { X509Ref::from_ptr(cert as *mut _) };
        let Some(name) = cert_identities(cert, forms).into_iter().nth(index) else {
            return Ok(0);
        };
        // SAFETY: `buf` has `len` bytes (the function's contract).
        unsafe { copy_name(&name.to_string(), buf, len) }?;
        Ok(1)
    })
}

/// CA discovery (draft-wilson-dane-pkix-cd): whether `ca` is among the CA certificates published
/// as full-certificate TLSA records (`0 0 0`, `2 0 0`) at `domain`, by a DNSSEC-secure answer.
/// 1: published; 0: not, or no secure answer (the last error and reason say which: the proof
/// state, no records); -1 on an error. For a broker that warns when a CA of its `cafile` is
/// withdrawn by its registry. Answers come from the handle's resolver cache.
///
/// # Safety
/// `d` from [`iotsafe_dane_new`]; `domain` NUL-terminated; `ca` a live `X509`.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_ca_published(
    d: *const IotsafeDane,
    domain: *const c_char,
    ca: *const openssl_sys::X509,
) -> c_int {
    guard(|| {
        let d = handle(d)?;
        // SAFETY: NUL-terminated (the function's contract).
        let domain = unsafe { req_str(domain, "domain") }?;
        if ca.is_null() {
            return Err("ca is NULL".into());
        }
        // SAFETY: a live X509, not NULL (checked above); only read.
        let ca = unsafe { X509Ref::from_ptr(ca as *mut _) };
        match crate::dane::ca_discovery::fetch(&d.resolver, domain) {
            Ok(published) if published.publishes(ca) => accept(),
            Ok(published) => {
                let why = Refusal::NoMatch(Vec::new());
                let subject = crate::dane::ca_discovery::subject(ca);
                refuse(format!("{subject} is not among the {published}"), &why)
            }
            Err(why) => refuse(format!("CA records at {domain}: {why}"), &why),
        }
    })
}

/// [`iotsafe_dane_verify_client_ttl`] that spends at most `budget_ms` milliseconds on DNS
/// (less when the handle's own budget ends first): a broker that tries each device name of a
/// certificate passes what is left of one budget for the whole CONNECT, so the names together
/// never hold it longer. A look-up the budget cuts short is a refusal with
/// `IOTSAFE_DANE_REASON_DNS_FAILURE`; cached answers cost no budget.
///
/// # Safety
/// As [`iotsafe_dane_verify_client_ttl`].
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_verify_client_within(
    d: *const IotsafeDane,
    cert: *mut openssl_sys::X509,
    chain: *mut openssl_sys::stack_st_X509,
    name: *const c_char,
    valid_for_seconds: *mut u32,
    budget_ms: u32,
) -> c_int {
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(u64::from(budget_ms));
    // SAFETY: the arguments as this function's contract says (the same contract).
    unsafe { verify_client_by(d, cert, chain, name, valid_for_seconds, Some(deadline)) }
}

/// The SAN dNSNames of `cert` that are device names of one of `forms`.
fn cert_identities(cert: &X509Ref, forms: u32) -> Vec<DeviceName> {
    crate::dane::client::san_dns_names(cert)
        .iter()
        .filter_map(|n| DeviceName::parse(n).ok())
        .filter(|n| forms & form_bit(n.form()) != 0)
        .collect()
}

fn form_bit(form: OwnerForm) -> u32 {
    match form {
        OwnerForm::Service => IOTSAFE_DANE_FORM_SERVICE,
        OwnerForm::Device => IOTSAFE_DANE_FORM_DEVICE,
        OwnerForm::Plain => IOTSAFE_DANE_FORM_PLAIN,
    }
}

/// Copies `name` and a NUL into `buf`; an error when `len` bytes cannot hold them.
///
/// # Safety
/// `buf` valid for `len` bytes.
unsafe fn copy_name(name: &str, buf: *mut c_char, len: usize) -> Result<(), String> {
    let bytes = name.as_bytes();
    if bytes.len() + 1 > len {
        return Err(format!("buffer of {len} bytes too small for {name}"));
    }
    // SAFETY: `buf` has `len` bytes (the caller's contract), checked to hold the name and NUL.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    Ok(())
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
        let v = match clientid_ext::peer_outcome(ssl) {
            Ok(v) => v,
            // Why the client was refused, for the application's log: the whole verification
            // when one ran.
            Err(why) => {
                let msg = match clientid_ext::peer_identity(ssl) {
                    Some(v) => v.to_string(),
                    None => why.to_string(),
                };
                return refuse(msg, &why);
            }
        };
        // SAFETY: `buf` has `len` bytes (the function's contract).
        unsafe { copy_name(&v.name, buf, len) }?;
        accept()
    })
}

/// Why the last DANE verification refused (`IOTSAFE_DANE_REASON_OK` when it did not):
/// - `ssl` a client `SSL`: its server authentication (by [`iotsafe_dane_ssl_enable`] or a
///   context configured by [`iotsafe_dane_ctx_enable_server_auth`]); after a failed handshake,
///   why it failed; `NOT_CHECKED` when none was configured;
/// - `ssl` a server `SSL` of a context configured by
///   [`iotsafe_dane_ctx_enable_clientid_server`]: the client's identity, as
///   [`iotsafe_dane_peer_identity`] reports it;
/// - `ssl` NULL: the calling thread's last refusal, as [`iotsafe_dane_last_error`] tells it:
///   of its last call (for [`iotsafe_dane_verify_client`], which has no `SSL`; `OK` after a
///   call that authenticated, `ERROR` after one that returned -1), or of a handshake it ran on a
///   context configured by [`iotsafe_dane_ctx_enable_server_auth`] (for a library that frees
///   its `SSL` before the application can ask, as libmosquitto does after a failed handshake):
///   `NOT_CHECKED` from the moment that handshake's check starts until it decides. Read once:
///   the next read is `NOT_CHECKED` until the thread decides something again, so an answer
///   for one connection is never taken for the next. A handshake that failed before the
///   server's certificate was checked leaves what was there: read after each call or
///   handshake, or ask with the `SSL` where the library lets you.
///
/// Per `SSL` because a broker verifies many connections at once, on one thread or several: a
/// per-thread or per-handle "last" reason would be another connection's by the time the
/// application asks. The reason stays on the `SSL` until its next verification.
///
/// # Safety
/// `ssl` NULL or a live `SSL`.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_last_reason(
    ssl: *const openssl_sys::SSL,
) -> IotsafeDaneReason {
    if ssl.is_null() {
        // Read once: a reason read for one connection is never taken for the next.
        return LAST_REASON
            .try_with(|r| r.replace(IotsafeDaneReason::NotChecked))
            .unwrap_or(IotsafeDaneReason::Error);
    }
    catch_unwind(|| {
        // SAFETY: the caller passes a live SSL (NULL was handled above); it is only read.
        let ssl = unsafe { SslRef::from_ptr(ssl as *mut _) };
        if ssl.is_server() {
            IotsafeDaneReason::of_outcome(clientid_ext::peer_outcome(ssl))
        } else {
            IotsafeDaneReason::of_outcome(server::outcome(ssl))
        }
    })
    .unwrap_or(IotsafeDaneReason::Error)
}

/// The name of a reason ("NO_MATCH", "BOGUS", ...; "UNKNOWN" for a number that is none), a
/// static string.
#[no_mangle]
pub extern "C" fn iotsafe_dane_reason_name(reason: c_int) -> *const c_char {
    let name: &'static [u8] = usize::try_from(reason)
        .ok()
        .and_then(|i| IotsafeDaneReason::ALL.get(i))
        .map_or(b"UNKNOWN\0", |r| r.name());
    name.as_ptr() as *const c_char
}

/// The DANE identity a handshake in this process authenticated with `cert` as the client's
/// certificate, on a server context configured by [`iotsafe_dane_ctx_enable_clientid_server`]
/// (by the application, or by the preload shim's broker mode): for code that is given the
/// client's certificate but not its `SSL`, such as a mosquitto plugin with the object
/// `mosquitto_client_certificate` returns (`SSL_get1_peer_certificate`). Copies the name
/// (NUL-terminated) into `buf` and returns 1; 0 when no handshake authenticated this
/// certificate object (another copy of the same certificate has no name), -1 when `buf` is too
/// small. The name is what the DNS said at that handshake: revalidate it by
/// [`iotsafe_dane_verify_client`] for as long as the connection lasts.
///
/// # Safety
/// `cert` a live `X509`; `buf` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn iotsafe_dane_handshake_identity(
    cert: *const openssl_sys::X509,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard(|| {
        if cert.is_null() || buf.is_null() {
            return Err("cert or buf is NULL".into());
        }
        // SAFETY: a live X509, not NULL (checked above); only read.
        let cert = unsafe { X509Ref::from_ptr(cert as *mut _) };
        let Some(name) = clientid_ext::handshake_identity(cert) else {
            return refuse(
                "no handshake authenticated this certificate".into(),
                &Refusal::NoIdentity,
            );
        };
        // SAFETY: `buf` valid for `len` bytes (the function's contract).
        unsafe { copy_name(&name, buf, len) }?;
        accept()
    })
}

fn code_point_or_default(code_point: u16) -> u16 {
    if code_point == 0 {
        clientid_ext::DEFAULT_CODE_POINT
    } else {
        code_point
    }
}

#[cfg(test)]
mod tests {
    use hickory_resolver::proto::rr::RecordType;
    use openssl::x509::X509VerifyResult;

    use super::*;
    use crate::dane::name::HostName;
    use crate::dane::refusal::OwnerLookup;
    use crate::dane::resolver::ResolveError;
    use IotsafeDaneReason as R;

    fn rejected(code: c_int) -> Refusal {
        // SAFETY: any X509_V_ERR code is a valid result.
        Refusal::CertificateRejected(unsafe { X509VerifyResult::from_raw(code) })
    }

    fn lookup(proof: Proof) -> OwnerLookup {
        OwnerLookup {
            owner: "_8883._tcp.broker.example.test.".into(),
            rtype: RecordType::TLSA,
            proof,
            summary: String::new(),
        }
    }

    fn name(reason: c_int) -> String {
        // SAFETY: the function returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(iotsafe_dane_reason_name(reason)) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let bad_name = HostName::parse("a b").unwrap_err();
        let dns = ResolveError::Lookup {
            name: "x.test.".into(),
            rtype: RecordType::TLSA,
            reason: "SERVFAIL".into(),
        };
        let cases = [
            (Refusal::BadName(bad_name), R::BadName),
            (Refusal::NotAllowed { name: "x".into() }, R::NotAllowed),
            (
                Refusal::TooManyIdentities { found: 9, limit: 8 },
                R::TooManyIdentities,
            ),
            (Refusal::NoServerName, R::NoServerName),
            (Refusal::DnsFailure(dns), R::DnsFailure),
            (Refusal::Bogus(lookup(Proof::Bogus)), R::Bogus),
            (
                Refusal::Indeterminate(lookup(Proof::Indeterminate)),
                R::Indeterminate,
            ),
            (Refusal::Insecure(lookup(Proof::Insecure)), R::Insecure),
            (
                Refusal::NoSecureRecords(vec![lookup(Proof::Secure)]),
                R::NoRecords,
            ),
            // Securely none at one owner, insecure at the other: the weaker proof.
            (
                Refusal::NoSecureRecords(vec![lookup(Proof::Secure), lookup(Proof::Insecure)]),
                R::Insecure,
            ),
            (
                Refusal::NoneUsable {
                    owner: "x".into(),
                    count: 2,
                },
                R::NoneUsable,
            ),
            (Refusal::NoMatch(Vec::new()), R::NoMatch),
            (rejected(openssl_sys::X509_V_ERR_DANE_NO_MATCH), R::NoMatch),
            (
                rejected(openssl_sys::X509_V_ERR_HOSTNAME_MISMATCH),
                R::CertificateRejected,
            ),
            (Refusal::NoIdentity, R::NoIdentity),
            (Refusal::NotChecked, R::NotChecked),
            (Refusal::TlsSetup("x".into()), R::TlsSetup),
            (
                Refusal::DaneRequired(Box::new(Refusal::NoSecureRecords(vec![lookup(
                    Proof::Secure,
                )]))),
                R::NoRecords,
            ),
        ];
        for (refusal, reason) in cases {
            assert_eq!(R::of(&refusal), reason, "{refusal}");
        }
        assert_eq!(R::of_outcome(Ok::<(), Refusal>(())), R::Ok);
    }

    /// The numbers are the C ABI: they never change.
    #[test]
    fn reason_numbers_and_names_are_stable() {
        let expected = [
            (0, "OK"),
            (1, "BAD_NAME"),
            (2, "NOT_ALLOWED"),
            (3, "TOO_MANY_IDENTITIES"),
            (4, "NO_SERVER_NAME"),
            (5, "DNS_FAILURE"),
            (6, "BOGUS"),
            (7, "INDETERMINATE"),
            (8, "INSECURE"),
            (9, "NO_RECORDS"),
            (10, "NONE_USABLE"),
            (11, "NO_MATCH"),
            (12, "CERTIFICATE_REJECTED"),
            (13, "NO_IDENTITY"),
            (14, "NOT_CHECKED"),
            (15, "TLS_SETUP"),
            (16, "ERROR"),
        ];
        assert_eq!(R::ALL.len(), expected.len());
        for (reason, (number, text)) in R::ALL.iter().zip(expected) {
            assert_eq!(*reason as c_int, number, "{reason:?}");
            assert_eq!(name(number), text);
        }
        for unknown in [-1, 17, c_int::MAX] {
            assert_eq!(name(unknown), "UNKNOWN");
        }
    }

    #[test]
    fn a_failed_call_leaves_error_as_the_threads_reason() {
        // SAFETY: NULL arguments are refused by the function.
        let rc = unsafe { iotsafe_dane_clear_cache(std::ptr::null()) };
        assert_eq!(rc, -1);
        // SAFETY: NULL asks for the thread's reason.
        assert_eq!(
            unsafe { iotsafe_dane_last_reason(std::ptr::null()) },
            R::Error
        );
    }
}
