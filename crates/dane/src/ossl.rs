//! The part of OpenSSL's DANE API (libssl 1.1.0+) that the `openssl` crate does not bind, and
//! the callbacks (verify, custom extensions, session tickets) that must work on `SSL` objects
//! made by C code, which the crate's own callback wrappers do not.
//!
//! Each wrapper takes the crate's safe reference types, so the raw pointers never leave this
//! file.

use std::ffi::CString;
use std::os::raw::{c_int, c_uchar, c_ulong};
use std::sync::OnceLock;

use foreign_types::ForeignTypeRef;
use openssl::ex_data::Index;
use openssl::ssl::{
    ExtensionContext, SslAlert, SslContext, SslContextBuilder, SslRef, SslVerifyMode,
};
use openssl::x509::{X509Ref, X509StoreContextRef};

/// `DANE_FLAG_NO_DANE_EE_NAMECHECKS`: no name checks when a DANE-EE(3) record matched, as
/// RFC 7671 §5.1 says (the record binds the key to the name already).
const DANE_FLAG_NO_DANE_EE_NAMECHECKS: c_ulong = 1;

extern "C" {
    fn SSL_get_SSL_CTX(ssl: *const openssl_sys::SSL) -> *mut openssl_sys::SSL_CTX;
    fn SSL_CTX_dane_enable(ctx: *mut openssl_sys::SSL_CTX) -> c_int;
    fn SSL_dane_enable(ssl: *mut openssl_sys::SSL, basedomain: *const libc::c_char) -> c_int;
    fn SSL_dane_set_flags(ssl: *mut openssl_sys::SSL, flags: c_ulong) -> c_ulong;
    fn SSL_add1_host(ssl: *mut openssl_sys::SSL, host: *const libc::c_char) -> c_int;
    fn SSL_dane_tlsa_add(
        ssl: *mut openssl_sys::SSL,
        usage: u8,
        selector: u8,
        mtype: u8,
        data: *const c_uchar,
        dlen: libc::size_t,
    ) -> c_int;
    fn SSL_get0_dane_authority(
        ssl: *mut openssl_sys::SSL,
        mcert: *mut *mut openssl_sys::X509,
        mspki: *mut *mut openssl_sys::EVP_PKEY,
    ) -> c_int;
    fn SSL_get0_dane_tlsa(
        ssl: *mut openssl_sys::SSL,
        usage: *mut u8,
        selector: *mut u8,
        mtype: *mut u8,
        data: *mut *const c_uchar,
        dlen: *mut libc::size_t,
    ) -> c_int;
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s.trim_end_matches('.')).map_err(|_| format!("name {s:?} contains NUL"))
}

/// Enables DANE on `ssl` (and, once, on its context, which OpenSSL requires first), with
/// `names` as reference identifiers for the usages that check names, and DANE-EE name checks
/// off.
pub(crate) fn dane_enable(ssl: &mut SslRef, names: &[String]) -> Result<(), String> {
    let (first, rest) = names.split_first().ok_or("no base domain for DANE")?;
    let first = cstring(first)?;
    // SAFETY: `ssl` is a live SSL object; its context outlives it. SSL_CTX_dane_enable is
    // idempotent; SSL_dane_enable copies the name.
    unsafe {
        if SSL_CTX_dane_enable(SSL_get_SSL_CTX(ssl.as_ptr())) <= 0 {
            return Err("SSL_CTX_dane_enable failed".into());
        }
        if SSL_dane_enable(ssl.as_ptr(), first.as_ptr()) <= 0 {
            return Err("SSL_dane_enable failed (DANE already enabled on this SSL?)".into());
        }
        SSL_dane_set_flags(ssl.as_ptr(), DANE_FLAG_NO_DANE_EE_NAMECHECKS);
    }
    for name in rest {
        let name = cstring(name)?;
        // SAFETY: live SSL, the name is copied.
        if unsafe { SSL_add1_host(ssl.as_ptr(), name.as_ptr()) } <= 0 {
            return Err(format!("SSL_add1_host({name:?}) failed"));
        }
    }
    Ok(())
}

/// Adds one record; `Ok(false)` when OpenSSL finds it unusable (unknown usage, selector or
/// digest, or a digest of the wrong length).
pub(crate) fn tlsa_add(
    ssl: &mut SslRef,
    usage: u8,
    selector: u8,
    mtype: u8,
    data: &[u8],
) -> Result<bool, String> {
    // SAFETY: live SSL with DANE enabled; `data` is valid for `data.len()` bytes and copied.
    let rc = unsafe {
        SSL_dane_tlsa_add(
            ssl.as_ptr(),
            usage,
            selector,
            mtype,
            data.as_ptr(),
            data.len(),
        )
    };
    match rc {
        r if r > 0 => Ok(true),
        0 => Ok(false),
        _ => Err(format!(
            "SSL_dane_tlsa_add({usage} {selector} {mtype}) failed"
        )),
    }
}

/// After a handshake: the depth of the certificate that matched a record and the record, or
/// `None` when no DANE record matched.
pub(crate) fn dane_match(ssl: &SslRef) -> Option<(i32, u8, u8, u8, Vec<u8>)> {
    let (mut u, mut s, mut m) = (0u8, 0u8, 0u8);
    let mut data: *const c_uchar = std::ptr::null();
    let mut len: libc::size_t = 0;
    // SAFETY: live SSL; out-pointers are valid; the returned data is owned by the SSL and
    // copied before this function returns. The mcert/mspki out-parameters are optional (NULL).
    unsafe {
        let depth =
            SSL_get0_dane_authority(ssl.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut());
        if depth < 0 {
            return None;
        }
        if SSL_get0_dane_tlsa(ssl.as_ptr(), &mut u, &mut s, &mut m, &mut data, &mut len) < 0
            || data.is_null()
        {
            return None;
        }
        let bytes = std::slice::from_raw_parts(data, len).to_vec();
        Some((depth, u, s, m, bytes))
    }
}

extern "C" {
    fn X509_STORE_CTX_get0_cert(ctx: *const openssl_sys::X509_STORE_CTX) -> *mut openssl_sys::X509;
    fn X509_STORE_CTX_get0_untrusted(
        ctx: *const openssl_sys::X509_STORE_CTX,
    ) -> *mut openssl_sys::stack_st_X509;
}

/// In a verify callback: the certificate being verified and the certificates the peer sent
/// with it (not the chain OpenSSL built, which stops where its own trust store ends).
pub(crate) fn presented_chain(
    store: &openssl::x509::X509StoreContextRef,
) -> Option<(openssl::x509::X509, Vec<openssl::x509::X509>)> {
    use openssl::stack::StackRef;
    use openssl::x509::{X509Ref, X509};
    // SAFETY: `store` is live for the callback; both getters return borrowed pointers owned by
    // it (or NULL), which are only read and up-referenced (to_owned) here.
    unsafe {
        let leaf = X509_STORE_CTX_get0_cert(store.as_ptr());
        if leaf.is_null() {
            return None;
        }
        let leaf = X509Ref::from_ptr(leaf).to_owned();
        let untrusted = X509_STORE_CTX_get0_untrusted(store.as_ptr());
        let chain: Vec<X509> = if untrusted.is_null() {
            Vec::new()
        } else {
            StackRef::<X509>::from_ptr(untrusted)
                .iter()
                .map(|c| c.to_owned())
                .filter(|c| c.to_der().ok() != leaf.to_der().ok())
                .collect()
        };
        Some((leaf, chain))
    }
}

/// `SSL_DANE` is opaque here: only passed from `SSL_get0_dane` to `X509_STORE_CTX_set0_dane`.
#[repr(C)]
pub(crate) struct SslDane {
    _private: [u8; 0],
}

type CertVerifyCb =
    unsafe extern "C" fn(ctx: *mut openssl_sys::X509_STORE_CTX, arg: *mut libc::c_void) -> c_int;

extern "C" {
    fn SSL_CTX_set_cert_verify_callback(
        ctx: *mut openssl_sys::SSL_CTX,
        cb: Option<CertVerifyCb>,
        arg: *mut libc::c_void,
    );
    fn SSL_get0_dane(ssl: *mut openssl_sys::SSL) -> *mut SslDane;
    fn X509_STORE_CTX_set0_dane(ctx: *mut openssl_sys::X509_STORE_CTX, dane: *mut SslDane);
    fn X509_STORE_CTX_get0_param(
        ctx: *mut openssl_sys::X509_STORE_CTX,
    ) -> *mut openssl_sys::X509_VERIFY_PARAM;
    fn X509_VERIFY_PARAM_add1_host(
        param: *mut openssl_sys::X509_VERIFY_PARAM,
        name: *const libc::c_char,
        namelen: libc::size_t,
    ) -> c_int;
}

/// What a context-level chain verification needs from this crate: given the `SSL` (its SNI
/// names the server) and the store context, prepare DANE or PKIX on them, or refuse.
pub(crate) trait ChainVerifier: Send + Sync + 'static {
    /// `Ok(hosts)`: verify the chain with OpenSSL, checking `hosts` when not empty (DANE
    /// records, if any, are already on the `SSL`). `Err`: refuse.
    fn prepare(&self, ssl: &mut SslRef) -> Result<Vec<String>, super::refusal::Refusal>;

    /// Told when OpenSSL's verification of a prepared connection failed (e.g. no TLSA record
    /// matched: `X509_V_ERR_DANE_NO_MATCH`), with OpenSSL's result.
    fn rejected(&self, _ssl: &SslRef, _result: openssl::x509::X509VerifyResult) {}
    /// Told that the chain passed.
    fn accepted(&self, _ssl: &SslRef) {}
}

/// Replaces the chain verification of every connection made from `ctx` by: `verifier.prepare`
/// on the connection's `SSL`, then OpenSSL's own verification (with DANE when records were
/// added). The verifier lives as long as the context.
pub(crate) fn install_chain_verifier<V: ChainVerifier>(
    lock: &Configuring,
    ctx: &mut openssl::ssl::SslContextBuilder,
    verifier: V,
) -> Result<(), String> {
    let arg = keep_with_context(lock, ctx, std::sync::Arc::new(verifier))? as *mut libc::c_void;
    // SAFETY: `ctx` is live; DANE must be enabled on the context before any SSL uses it; `arg`
    // is the verifier, kept alive with the context, after its last callback.
    unsafe {
        if SSL_CTX_dane_enable(ctx.as_ptr()) <= 0 {
            return Err("SSL_CTX_dane_enable failed".into());
        }
        SSL_CTX_set_cert_verify_callback(ctx.as_ptr(), Some(verify_chain::<V>), arg);
    }
    Ok(())
}

unsafe extern "C" fn verify_chain<V: ChainVerifier>(
    store: *mut openssl_sys::X509_STORE_CTX,
    arg: *mut libc::c_void,
) -> c_int {
    // No panic may unwind into libssl.
    contain_panic("DANE chain verification", || {
        // SAFETY: called by libssl with the store context of a live handshake, whose ex_data
        // holds the SSL; `arg` is the verifier installed with this callback.
        unsafe {
            let verifier = &*(arg as *const V);
            let ssl = openssl_sys::X509_STORE_CTX_get_ex_data(
                store,
                openssl_sys::SSL_get_ex_data_X509_STORE_CTX_idx(),
            ) as *mut openssl_sys::SSL;
            if ssl.is_null() {
                return 0;
            }
            let ssl_ref = SslRef::from_ptr_mut(ssl);
            match verifier.prepare(ssl_ref) {
                Ok(hosts) => {
                    let param = X509_STORE_CTX_get0_param(store);
                    for host in hosts {
                        let host = host.trim_end_matches('.');
                        X509_VERIFY_PARAM_add1_host(param, host.as_ptr() as *const _, host.len());
                    }
                    // The store context was set up before DANE was enabled on the SSL.
                    X509_STORE_CTX_set0_dane(store, SSL_get0_dane(ssl));
                    let ok = openssl_sys::X509_verify_cert(store);
                    if ok <= 0 {
                        let code = openssl_sys::X509_STORE_CTX_get_error(store);
                        let result = openssl::x509::X509VerifyResult::from_raw(code);
                        verifier.rejected(ssl_ref, result);
                    } else {
                        verifier.accepted(ssl_ref);
                    }
                    ok
                }
                Err(_) => {
                    openssl_sys::X509_STORE_CTX_set_error(
                        store,
                        openssl_sys::X509_V_ERR_APPLICATION_VERIFICATION,
                    );
                    0
                }
            }
        }
    })
    .unwrap_or(0)
}

// Callbacks installed through OpenSSL's C API with functions of our own.
//
// The `openssl` crate's callback wrappers find their closures through per-`SSL` data that only
// its `Ssl::new` sets, and panic (abort, across `extern "C"`) on an `SSL` made by C `SSL_new`,
// as every C program makes them. The functions below find their state only through what
// OpenSSL itself hands them: the callback argument, or the context's own ex_data. Every one
// runs its body under `contain_panic` and fails closed.

/// `ERR_LIB_USER`, and `ERR_R_INTERNAL_ERROR` (a fatal common reason, "internal error").
const ERR_LIB_USER: c_int = 128;
const ERR_R_INTERNAL_ERROR: c_int = 259 | (1 << 18);

/// Runs a callback's `body` with no unwinding into libssl: a panic is caught and put on this
/// thread's OpenSSL error queue (where the application looks for why its handshake failed),
/// naming the callback, and `None` is returned for the callback to fail closed on.
fn contain_panic<T>(callback: &str, body: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(value) => Some(value),
        Err(payload) => {
            report_panic(callback, payload.as_ref());
            None
        }
    }
}

fn report_panic(callback: &str, payload: &(dyn std::any::Any + Send)) {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    let text = format!(
        "iotsafe-dane: internal error (panic) in the {callback} callback, failed closed: {message}"
    );
    push_error(ERR_LIB_USER, ERR_R_INTERNAL_ERROR, c"contain_panic", &text);
}

/// Puts `text` on this thread's OpenSSL error queue.
fn push_error(lib: c_int, reason: c_int, func: &std::ffi::CStr, text: &str) {
    let Ok(text) = CString::new(text.replace('\0', " ")) else {
        return;
    };
    // SAFETY: plain calls on this thread's error queue; the format takes one string, which is
    // NUL-terminated and copied by OpenSSL.
    unsafe {
        openssl_sys::ERR_new();
        openssl_sys::ERR_set_debug(
            c"src/dane/ossl.rs".as_ptr(),
            line!() as c_int,
            func.as_ptr(),
        );
        openssl_sys::ERR_set_error(lib, reason, c"%s".as_ptr(), text.as_ptr());
    }
}

/// Everything a context's callbacks point at, kept alive as long as the context: callbacks hold
/// raw pointers into these values, so they are only ever added, never replaced.
type KeepAlive = std::sync::Mutex<Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>>;

fn keep_alive_index() -> Option<Index<SslContext, KeepAlive>> {
    static IDX: OnceLock<Option<Index<SslContext, KeepAlive>>> = OnceLock::new();
    *IDX.get_or_init(|| SslContext::new_ex_index().ok())
}

/// Proof that the caller holds the process-wide lock on configuring contexts. Configuring is
/// a series of check-then-set steps on the context's ex_data (and OpenSSL's own setters are not
/// safe against each other on one context): two threads configuring the same `SSL_CTX` at once
/// would lose one's callback state while its callbacks still point at it.
pub(crate) struct Configuring(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

/// Takes the lock on configuring contexts (held until the result is dropped).
pub(crate) fn configuring() -> Configuring {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    Configuring(LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// Keeps `value` alive as long as `ctx` and returns a pointer to it valid that long.
fn keep_with_context<T: Send + Sync + 'static>(
    _lock: &Configuring,
    ctx: &mut SslContextBuilder,
    value: std::sync::Arc<T>,
) -> Result<*const T, String> {
    let index = keep_alive_index().ok_or("no SSL_CTX ex_data index")?;
    let ptr = std::sync::Arc::as_ptr(&value);
    // SAFETY: `ctx` is live; the slot holds a `KeepAlive` boxed by the crate's ex_data
    // representation (the index was made for that type) or NULL. Under `_lock`, no other
    // thread sets it meanwhile.
    let kept = unsafe { openssl_sys::SSL_CTX_get_ex_data(ctx.as_ptr(), index.as_raw()) };
    if kept.is_null() {
        ctx.set_ex_data(index, KeepAlive::new(vec![value]));
    } else {
        // SAFETY: see above; the list lives with the context.
        let kept = unsafe { &*(kept as *const KeepAlive) };
        kept.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(value);
    }
    Ok(ptr)
}

/// Whether `ctx` holds a value at `index` (the builder has no getter).
fn has_ex_data<T>(ctx: &SslContextBuilder, index: Index<SslContext, T>) -> bool {
    // SAFETY: live context; only the slot's pointer is read.
    !unsafe { openssl_sys::SSL_CTX_get_ex_data(ctx.as_ptr(), index.as_raw()) }.is_null()
}

/// A TLS extension handled by our own callbacks (`SSL_CTX_add_custom_ext`).
pub(crate) trait CustomExtension: Send + Sync + 'static {
    /// The body to send in `context` (in a Certificate message, for the certificate at
    /// `cert_index`), or `None` to send nothing. Borrowed from `self`, which outlives the
    /// handshake.
    fn add(&self, context: ExtensionContext, cert_index: Option<usize>) -> Option<&[u8]>;

    /// The peer sent the extension with `data`; `Err` aborts the handshake with that alert.
    fn parse(
        &self,
        ssl: &mut SslRef,
        context: ExtensionContext,
        data: &[u8],
        cert_index: Option<usize>,
    ) -> Result<(), SslAlert>;
}

/// Registers `ext` as the handler of extension `ext_type` in `context` on `ctx`. Fails when the
/// context already handles that extension.
pub(crate) fn add_custom_ext<E: CustomExtension>(
    lock: &Configuring,
    ctx: &mut SslContextBuilder,
    ext_type: u16,
    context: ExtensionContext,
    ext: E,
) -> Result<(), String> {
    let arg = keep_with_context(lock, ctx, std::sync::Arc::new(ext))? as *mut libc::c_void;
    // SAFETY: `ctx` is live; `arg` points at `ext`, kept alive with the context (the extension
    // definition, and the copies SSL_new makes of it, cannot outlive it).
    let rc = unsafe {
        openssl_sys::SSL_CTX_add_custom_ext(
            ctx.as_ptr(),
            ext_type.into(),
            context.bits(),
            Some(ext_add::<E>),
            Some(ext_free),
            arg,
            Some(ext_parse::<E>),
            arg,
        )
    };
    if rc != 1 {
        return Err(format!(
            "cannot add TLS extension {ext_type} to the context (already added?)"
        ));
    }
    Ok(())
}

/// The alert's description number, which is what libssl wants back.
fn alert_value(alert: SslAlert) -> c_int {
    alert.reason_code() - openssl_sys::SSL_AD_REASON_OFFSET
}

/// Which certificate of a Certificate message an extension callback is about.
fn cert_index(
    context: ExtensionContext,
    x: *mut openssl_sys::X509,
    chainidx: usize,
) -> Option<usize> {
    (context.contains(ExtensionContext::TLS1_3_CERTIFICATE) && !x.is_null()).then_some(chainidx)
}

unsafe extern "C" fn ext_add<E: CustomExtension>(
    _ssl: *mut openssl_sys::SSL,
    _ext_type: libc::c_uint,
    context: libc::c_uint,
    out: *mut *const c_uchar,
    outlen: *mut libc::size_t,
    x: *mut openssl_sys::X509,
    chainidx: libc::size_t,
    al: *mut c_int,
    arg: *mut libc::c_void,
) -> c_int {
    let body = contain_panic("TLS extension add", || {
        let context = ExtensionContext::from_bits_truncate(context);
        // SAFETY: `arg` is the `E` registered with this callback, alive with the context.
        let ext = unsafe { &*(arg as *const E) };
        ext.add(context, cert_index(context, x, chainidx))
            .map(|b| (b.as_ptr(), b.len()))
    });
    match body {
        Some(None) => 0,
        Some(Some((ptr, len))) => {
            // SAFETY: out-pointers from libssl; the body is borrowed from `E`, which outlives
            // the handshake, so nothing needs freeing.
            unsafe {
                *out = ptr;
                *outlen = len;
            }
            1
        }
        None => {
            // SAFETY: out-pointer from libssl.
            unsafe { *al = alert_value(SslAlert::INTERNAL_ERROR) };
            -1
        }
    }
}

/// The bodies are borrowed from the extension handler: nothing to free.
unsafe extern "C" fn ext_free(
    _ssl: *mut openssl_sys::SSL,
    _ext_type: libc::c_uint,
    _context: libc::c_uint,
    _out: *const c_uchar,
    _arg: *mut libc::c_void,
) {
}

unsafe extern "C" fn ext_parse<E: CustomExtension>(
    ssl: *mut openssl_sys::SSL,
    _ext_type: libc::c_uint,
    context: libc::c_uint,
    input: *const c_uchar,
    inlen: libc::size_t,
    x: *mut openssl_sys::X509,
    chainidx: libc::size_t,
    al: *mut c_int,
    arg: *mut libc::c_void,
) -> c_int {
    let verdict = contain_panic("TLS extension parse", || {
        let context = ExtensionContext::from_bits_truncate(context);
        // SAFETY: `arg` is the `E` registered with this callback; `ssl` is the live SSL of the
        // handshake; `input` is valid for `inlen` bytes during the call.
        unsafe {
            let ext = &*(arg as *const E);
            let data = if input.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(input, inlen)
            };
            ext.parse(
                SslRef::from_ptr_mut(ssl),
                context,
                data,
                cert_index(context, x, chainidx),
            )
        }
    })
    .unwrap_or(Err(SslAlert::INTERNAL_ERROR));
    match verdict {
        Ok(()) => 1,
        Err(alert) => {
            // SAFETY: out-pointer from libssl.
            unsafe { *al = alert_value(alert) };
            0
        }
    }
}

/// Decides the peer's certificate in a verify callback (`SSL_CTX_set_verify`).
pub(crate) trait CertificateCheck: Send + Sync + 'static {
    /// OpenSSL's per-certificate call: `preverify` is its own verdict on the certificate at
    /// `store.error_depth()`; the return value replaces it.
    fn check(&self, preverify: bool, ssl: &mut SslRef, store: &mut X509StoreContextRef) -> bool;
}

type SharedCheck = std::sync::Arc<dyn CertificateCheck>;

fn check_index() -> Option<Index<SslContext, SharedCheck>> {
    static IDX: OnceLock<Option<Index<SslContext, SharedCheck>>> = OnceLock::new();
    *IDX.get_or_init(|| SslContext::new_ex_index().ok())
}

/// Peer verification with `mode` on `ctx`, decided by `check` for every connection made from it.
/// The callback has no argument: it finds `check` in the ex_data of the connection's context.
/// A context has one check for its lifetime: a second one is refused (the first may be running
/// in another connection's handshake).
pub(crate) fn set_verify_check(
    _lock: &Configuring,
    ctx: &mut SslContextBuilder,
    mode: SslVerifyMode,
    check: SharedCheck,
) -> Result<(), String> {
    let index = check_index().ok_or("no SSL_CTX ex_data index")?;
    if has_ex_data(ctx, index) {
        return Err(
            "the context already verifies client certificates by DANE (enabled twice?)".into(),
        );
    }
    ctx.set_ex_data(index, check);
    // SAFETY: live context; the callback is ours.
    unsafe { openssl_sys::SSL_CTX_set_verify(ctx.as_ptr(), mode.bits(), Some(verify_callback)) };
    Ok(())
}

extern "C" fn verify_callback(preverify: c_int, store: *mut openssl_sys::X509_STORE_CTX) -> c_int {
    let ok = contain_panic("certificate verify", || {
        // SAFETY: called by libssl with the store context of a live handshake, whose ex_data
        // holds the SSL; the check is kept by that SSL's context.
        unsafe {
            let ssl = openssl_sys::X509_STORE_CTX_get_ex_data(
                store,
                openssl_sys::SSL_get_ex_data_X509_STORE_CTX_idx(),
            ) as *mut openssl_sys::SSL;
            let index = check_index()?;
            if ssl.is_null() {
                return None;
            }
            let ctx = openssl::ssl::SslContextRef::from_ptr(SSL_get_SSL_CTX(ssl));
            // Not there when the application moved the SSL to another context: fail closed.
            let check = ctx.ex_data(index)?.clone();
            Some(check.check(
                preverify != 0,
                SslRef::from_ptr_mut(ssl),
                X509StoreContextRef::from_ptr_mut(store),
            ))
        }
    });
    match ok {
        Some(Some(true)) => 1,
        _ => {
            // SAFETY: live store context.
            unsafe {
                if openssl_sys::X509_STORE_CTX_get_error(store) == openssl_sys::X509_V_OK {
                    openssl_sys::X509_STORE_CTX_set_error(
                        store,
                        openssl_sys::X509_V_ERR_APPLICATION_VERIFICATION,
                    );
                }
            }
            0
        }
    }
}

/// What a server keeps in its session tickets and checks when a client offers one back
/// (`SSL_CTX_set_session_ticket_cb`).
pub(crate) trait TicketCheck: Send + Sync + 'static {
    /// Data to seal into the tickets issued on this connection (`None`: none).
    fn seal(&self, ssl: &SslRef) -> Option<Vec<u8>>;

    /// A ticket decrypted: may it resume? `sealed` is what [`TicketCheck::seal`] put in it,
    /// `peer` the client certificate of the session. `false` makes a full handshake instead.
    fn may_resume(&self, ssl: &mut SslRef, sealed: Option<&[u8]>, peer: Option<&X509Ref>) -> bool;
}

const SSL_TICKET_SUCCESS: c_int = 5;
const SSL_TICKET_SUCCESS_RENEW: c_int = 6;
const SSL_TICKET_RETURN_IGNORE_RENEW: c_int = 2;
const SSL_TICKET_RETURN_USE: c_int = 3;
const SSL_TICKET_RETURN_USE_RENEW: c_int = 4;

type TicketGenCb =
    unsafe extern "C" fn(ssl: *mut openssl_sys::SSL, arg: *mut libc::c_void) -> c_int;
type TicketDecCb = unsafe extern "C" fn(
    ssl: *mut openssl_sys::SSL,
    sess: *mut openssl_sys::SSL_SESSION,
    keyname: *const c_uchar,
    keyname_len: libc::size_t,
    status: c_int,
    arg: *mut libc::c_void,
) -> c_int;

extern "C" {
    fn SSL_CTX_set_session_ticket_cb(
        ctx: *mut openssl_sys::SSL_CTX,
        gen_cb: Option<TicketGenCb>,
        dec_cb: Option<TicketDecCb>,
        arg: *mut libc::c_void,
    ) -> c_int;
    fn SSL_SESSION_set1_ticket_appdata(
        ss: *mut openssl_sys::SSL_SESSION,
        data: *const libc::c_void,
        len: libc::size_t,
    ) -> c_int;
    fn SSL_SESSION_get0_ticket_appdata(
        ss: *mut openssl_sys::SSL_SESSION,
        data: *mut *mut libc::c_void,
        len: *mut libc::size_t,
    ) -> c_int;
    fn SSL_SESSION_get0_peer(ss: *mut openssl_sys::SSL_SESSION) -> *mut openssl_sys::X509;
}

/// Installs `check` as the judge of every session ticket of `ctx`.
pub(crate) fn set_ticket_check<T: TicketCheck>(
    lock: &Configuring,
    ctx: &mut SslContextBuilder,
    check: std::sync::Arc<T>,
) -> Result<(), String> {
    let arg = keep_with_context(lock, ctx, check)? as *mut libc::c_void;
    // SAFETY: live context; `arg` is kept alive with it.
    let rc = unsafe {
        SSL_CTX_set_session_ticket_cb(
            ctx.as_ptr(),
            Some(ticket_seal::<T>),
            Some(ticket_open::<T>),
            arg,
        )
    };
    if rc != 1 {
        return Err("SSL_CTX_set_session_ticket_cb failed".into());
    }
    Ok(())
}

unsafe extern "C" fn ticket_seal<T: TicketCheck>(
    ssl: *mut openssl_sys::SSL,
    arg: *mut libc::c_void,
) -> c_int {
    contain_panic("session ticket seal", || {
        // SAFETY: `arg` is the `T` registered with this callback; `ssl` is live, its session is
        // the one the ticket is made from. set1 copies the data (NULL, 0 clears it).
        unsafe {
            let check = &*(arg as *const T);
            let session = openssl_sys::SSL_get_session(ssl);
            if session.is_null() {
                return 0;
            }
            let sealed = check.seal(SslRef::from_ptr(ssl));
            let (ptr, len) = match &sealed {
                Some(d) => (d.as_ptr() as *const libc::c_void, d.len()),
                None => (std::ptr::null(), 0),
            };
            SSL_SESSION_set1_ticket_appdata(session, ptr, len)
        }
    })
    .unwrap_or(0)
}

unsafe extern "C" fn ticket_open<T: TicketCheck>(
    ssl: *mut openssl_sys::SSL,
    sess: *mut openssl_sys::SSL_SESSION,
    _keyname: *const c_uchar,
    _keyname_len: libc::size_t,
    status: c_int,
    arg: *mut libc::c_void,
) -> c_int {
    if status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW || sess.is_null() {
        // No usable ticket: a full handshake, and a new ticket after it.
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    let resume = contain_panic("session ticket check", || {
        // SAFETY: `arg` is the `T` registered with this callback; `ssl` and `sess` are live
        // for the call; the app data and peer are borrowed from `sess` and not kept.
        unsafe {
            let check = &*(arg as *const T);
            let mut data: *mut libc::c_void = std::ptr::null_mut();
            let mut len: libc::size_t = 0;
            let sealed = (SSL_SESSION_get0_ticket_appdata(sess, &mut data, &mut len) == 1
                && !data.is_null())
            .then(|| std::slice::from_raw_parts(data as *const u8, len));
            let peer = SSL_SESSION_get0_peer(sess);
            let peer = (!peer.is_null()).then(|| X509Ref::from_ptr(peer));
            check.may_resume(SslRef::from_ptr_mut(ssl), sealed, peer)
        }
    })
    .unwrap_or(false);
    match (resume, status) {
        (false, _) => SSL_TICKET_RETURN_IGNORE_RENEW,
        (true, SSL_TICKET_SUCCESS_RENEW) => SSL_TICKET_RETURN_USE_RENEW,
        (true, _) => SSL_TICKET_RETURN_USE,
    }
}

/// Told when a handshake starts and when it is done on an `SSL` of a context
/// (`SSL_CTX_set_info_callback`): per-connection state of one handshake must not survive into
/// the next one on the same `SSL` (after `SSL_clear`, or a TLS 1.2 renegotiation).
pub(crate) trait HandshakeHooks: Send + Sync + 'static {
    /// A handshake starts (`SSL_CB_HANDSHAKE_START`).
    fn started(&self, ssl: &mut SslRef);
    /// A handshake is done (`SSL_CB_HANDSHAKE_DONE`), before the application hears of it.
    fn done(&self, ssl: &mut SslRef);
}

const SSL_CB_HANDSHAKE_START: c_int = 0x10;
const SSL_CB_HANDSHAKE_DONE: c_int = 0x20;

type InfoCb = unsafe extern "C" fn(ssl: *const openssl_sys::SSL, kind: c_int, value: c_int);

extern "C" {
    fn SSL_CTX_set_info_callback(ctx: *mut openssl_sys::SSL_CTX, cb: Option<InfoCb>);
    fn SSL_CTX_get_info_callback(ctx: *mut openssl_sys::SSL_CTX) -> Option<InfoCb>;
    fn SSL_set_verify_result(ssl: *mut openssl_sys::SSL, result: libc::c_long);
}

/// What the info callback of a context calls: our hooks, then the callback the application had
/// set before (kept, not replaced).
struct InfoChain {
    hooks: std::sync::Arc<dyn HandshakeHooks>,
    previous: Option<InfoCb>,
}

fn info_index() -> Option<Index<SslContext, InfoChain>> {
    static IDX: OnceLock<Option<Index<SslContext, InfoChain>>> = OnceLock::new();
    *IDX.get_or_init(|| SslContext::new_ex_index().ok())
}

/// Whether `ctx` already has handshake hooks ([`set_handshake_hooks`] would refuse), asked
/// before configuring anything else so that a refused second configuration changes nothing.
pub(crate) fn has_handshake_hooks(
    _lock: &Configuring,
    ctx: &SslContextBuilder,
) -> Result<bool, String> {
    let index = info_index().ok_or("no SSL_CTX ex_data index")?;
    Ok(has_ex_data(ctx, index))
}

/// Calls `hooks` at the start and end of every handshake on connections made from `ctx`. An
/// info callback the application set before is still called, after ours; one set afterwards
/// replaces ours (the hooks' users must fail closed when they did not run).
pub(crate) fn set_handshake_hooks(
    _lock: &Configuring,
    ctx: &mut SslContextBuilder,
    hooks: std::sync::Arc<dyn HandshakeHooks>,
) -> Result<(), String> {
    let index = info_index().ok_or("no SSL_CTX ex_data index")?;
    if has_ex_data(ctx, index) {
        return Err("the context already has handshake hooks (enabled twice?)".into());
    }
    // SAFETY: live context; only reads its callback pointer.
    let previous = unsafe { SSL_CTX_get_info_callback(ctx.as_ptr()) };
    ctx.set_ex_data(index, InfoChain { hooks, previous });
    // SAFETY: live context; the callback is ours and finds its state in the context's ex_data,
    // set just before.
    unsafe { SSL_CTX_set_info_callback(ctx.as_ptr(), Some(info_callback)) };
    Ok(())
}

unsafe extern "C" fn info_callback(ssl: *const openssl_sys::SSL, kind: c_int, value: c_int) {
    let previous = contain_panic("handshake info", || {
        // SAFETY: called by libssl on a live SSL, whose context's ex_data holds the chain
        // (or not, when the SSL was moved to another context: then nothing of ours runs).
        unsafe {
            let ctx = openssl::ssl::SslContextRef::from_ptr(SSL_get_SSL_CTX(ssl));
            let chain = ctx.ex_data(info_index()?)?;
            let ssl = SslRef::from_ptr_mut(ssl as *mut openssl_sys::SSL);
            if kind & SSL_CB_HANDSHAKE_START != 0 {
                chain.hooks.started(ssl);
            }
            if kind & SSL_CB_HANDSHAKE_DONE != 0 {
                chain.hooks.done(ssl);
            }
            chain.previous
        }
    })
    .flatten();
    if let Some(previous) = previous {
        // SAFETY: the application's callback, with the arguments libssl gave us.
        unsafe { previous(ssl, kind, value) };
    }
}

extern "C" {
    fn SSL_in_before(ssl: *const openssl_sys::SSL) -> c_int;
}

/// The session a client `SSL` offers to resume at its first handshake (set by
/// `SSL_set_session`): `None` when there is none (or the first handshake has begun), else the
/// certificate its server had (`None` inside for a session without one, as an application
/// can build: nothing vouches for it).
pub(crate) fn offered_session_peer(ssl: &SslRef) -> Option<Option<openssl::x509::X509>> {
    // SAFETY: live SSL; only its state is read.
    if unsafe { SSL_in_before(ssl.as_ptr()) } == 0 {
        return None;
    }
    let session = ssl.session()?;
    // SAFETY: a live session of `ssl`; the certificate it returns is borrowed from it and
    // copied (reference counted) before the borrow ends.
    unsafe {
        let peer = SSL_SESSION_get0_peer(session.as_ptr());
        Some((!peer.is_null()).then(|| openssl::x509::X509Ref::from_ptr(peer).to_owned()))
    }
}

/// Drops the session a client `SSL` offered to resume: the handshake about to start is a full
/// one (with certificate verification). An error when OpenSSL could not (`SSL_set_session`
/// first restores the context's method on the `SSL`, which can fail): the session is then
/// still offered.
pub(crate) fn forget_offered_session(ssl: &mut SslRef) -> Result<(), String> {
    // SAFETY: live SSL before its first handshake (the caller checked with
    // `offered_session_peer`); NULL is a valid session argument.
    match unsafe { openssl_sys::SSL_set_session(ssl.as_ptr(), std::ptr::null_mut()) } {
        1 => Ok(()),
        _ => Err(format!(
            "SSL_set_session(NULL) failed: {}",
            openssl::error::ErrorStack::get()
        )),
    }
}

/// `SSL_CTRL_GET_TOTAL_RENEGOTIATIONS` (`SSL_total_renegotiations` is a macro of `SSL_ctrl`).
const SSL_CTRL_GET_TOTAL_RENEGOTIATIONS: c_int = 12;

/// Whether `ssl` went through a TLS 1.2 renegotiation (one it or its peer asked for) since its
/// first handshake.
pub(crate) fn renegotiated(ssl: &SslRef) -> bool {
    // SAFETY: live SSL; a getter of a counter.
    unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            SSL_CTRL_GET_TOTAL_RENEGOTIATIONS,
            0,
            std::ptr::null_mut(),
        ) > 0
    }
}

/// Makes every handshake of `ssl` from now on fail before its first message ("no protocols
/// available": the lowest protocol version allowed is above the highest), for a refusal taken
/// where no error can be returned (an info callback).
pub(crate) fn refuse_handshake(ssl: &mut SslRef) {
    // SAFETY: live SSL; both are plain setters of its version bounds, valid versions.
    unsafe {
        openssl_sys::SSL_set_min_proto_version(ssl.as_ptr(), openssl_sys::TLS1_3_VERSION as _);
        openssl_sys::SSL_set_max_proto_version(ssl.as_ptr(), openssl_sys::TLS1_VERSION as _);
    }
}

/// Makes `SSL_get_verify_result` report that the application (we) refused the peer.
pub(crate) fn refuse_verify_result(ssl: &mut SslRef) {
    // SAFETY: live SSL.
    unsafe {
        SSL_set_verify_result(
            ssl.as_ptr(),
            openssl_sys::X509_V_ERR_APPLICATION_VERIFICATION.into(),
        )
    };
}

/// `CRYPTO_EX_INDEX_X509` (crypto.h): ex_data of `X509` objects.
const CRYPTO_EX_INDEX_X509: c_int = 3;

extern "C" {
    fn X509_set_ex_data(x: *mut openssl_sys::X509, idx: c_int, arg: *mut libc::c_void) -> c_int;
    fn X509_get_ex_data(x: *const openssl_sys::X509, idx: c_int) -> *mut libc::c_void;
}

/// The `X509` ex_data slot of the DANE identity a handshake authenticated with the
/// certificate (a `CString` owned by the certificate, freed with it).
fn certificate_name_index() -> Option<c_int> {
    static IDX: OnceLock<Option<c_int>> = OnceLock::new();
    *IDX.get_or_init(|| {
        // SAFETY: registers a slot with our free function; no other argument is read.
        let idx = unsafe {
            openssl_sys::CRYPTO_get_ex_new_index(
                CRYPTO_EX_INDEX_X509,
                0,
                std::ptr::null_mut(),
                None,
                None,
                Some(free_certificate_name),
            )
        };
        (idx >= 0).then_some(idx)
    })
}

unsafe extern "C" fn free_certificate_name(
    _parent: *mut libc::c_void,
    name: *mut libc::c_void,
    _ad: *mut openssl_sys::CRYPTO_EX_DATA,
    _idx: c_int,
    _argl: libc::c_long,
    _argp: *mut libc::c_void,
) {
    if !name.is_null() {
        // SAFETY: only `set_certificate_name` stores here, a CString it gave up.
        drop(unsafe { CString::from_raw(name as *mut libc::c_char) });
    }
}

/// Records on `cert` the identity its handshake authenticated, once: the first name stays
/// (a certificate object is made per handshake, so there is no second one to race with it).
pub(crate) fn set_certificate_name(cert: &X509Ref, name: &str) {
    let (Some(idx), Ok(name)) = (certificate_name_index(), CString::new(name)) else {
        return;
    };
    if certificate_name(cert).is_some() {
        return;
    }
    let raw = name.into_raw();
    // SAFETY: live certificate; on success the slot owns `raw` (freed with the certificate).
    if unsafe { X509_set_ex_data(cert.as_ptr(), idx, raw as *mut libc::c_void) } != 1 {
        // SAFETY: not stored: still ours.
        drop(unsafe { CString::from_raw(raw) });
    }
}

/// The identity recorded on `cert` by [`set_certificate_name`].
pub(crate) fn certificate_name(cert: &X509Ref) -> Option<String> {
    let idx = certificate_name_index()?;
    // SAFETY: live certificate; the slot holds NULL or a CString of ours.
    let name = unsafe { X509_get_ex_data(cert.as_ptr(), idx) };
    // SAFETY: a NUL-terminated string the certificate owns while it lives.
    (!name.is_null())
        .then(|| unsafe { std::ffi::CStr::from_ptr(name as *const libc::c_char) })
        .map(|n| n.to_string_lossy().into_owned())
}

/// Puts `msg` on the thread's OpenSSL error queue (as a libssl verification failure), so that
/// a program that logs OpenSSL's errors after a failed handshake (mosquitto does) logs why.
pub(crate) fn raise_verify_error(msg: &str) {
    /// `ERR_LIB_SSL` and `SSL_R_CERTIFICATE_VERIFY_FAILED` (err.h, sslerr.h).
    const ERR_LIB_SSL: c_int = 20;
    const SSL_R_CERTIFICATE_VERIFY_FAILED: c_int = 134;
    push_error(
        ERR_LIB_SSL,
        SSL_R_CERTIFICATE_VERIFY_FAILED,
        c"client-verification",
        &format!("iotsafe-dane: {msg}"),
    );
}

/// Whether `cert` is a CA certificate: a valid basicConstraints extension with CA:TRUE
/// (OpenSSL's EXFLAG_CA; a version 1 or keyUsage-only certificate does not count).
pub(crate) fn is_ca_certificate(cert: &X509Ref) -> bool {
    // SAFETY: `cert` is a live X509; the call only caches and reads its extension flags.
    let flags = unsafe { openssl_sys::X509_get_extension_flags(cert.as_ptr()) };
    flags & openssl_sys::EXFLAG_CA != 0 && flags & openssl_sys::EXFLAG_INVALID == 0
}

extern "C" {
    fn X509_get_X509_PUBKEY(x: *const openssl_sys::X509) -> *mut libc::c_void;
    fn i2d_X509_PUBKEY(a: *const libc::c_void, out: *mut *mut c_uchar) -> c_int;
}

/// The DER of `cert`'s SubjectPublicKeyInfo (TLSA selector 1): its algorithm and key bits as
/// the certificate carries them, which is what OpenSSL's own DANE matching hashes.
///
/// Why not `cert.public_key()?.public_key_to_der()`: that is `i2d_PUBKEY` on an `EVP_PKEY`,
/// which in OpenSSL 3 looks up and builds a provider encoder on every call, the largest part
/// of a warm check at a broker (several per cent of its CPU per connection), and which
/// re-encodes the key from its decoded form (adding, e.g., an RSA key's NULL parameters
/// where the certificate has none). The certificate's own `X509_PUBKEY` is encoded from its
/// parsed fields, with no look-up.
pub(crate) fn spki_der(cert: &X509Ref) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    // SAFETY: `cert` is a live X509; the returned X509_PUBKEY is owned by it (not freed here)
    // and lives as long as the borrow of `cert`.
    let spki = unsafe { X509_get_X509_PUBKEY(cert.as_ptr()) };
    if spki.is_null() {
        return Err(openssl::error::ErrorStack::get());
    }
    // SAFETY: a null output pointer asks for the length only.
    let len = unsafe { i2d_X509_PUBKEY(spki, std::ptr::null_mut()) };
    let Ok(len @ 1..) = usize::try_from(len) else {
        return Err(openssl::error::ErrorStack::get());
    };
    let mut der = vec![0u8; len];
    let mut out = der.as_mut_ptr();
    // SAFETY: `der` has room for the `len` bytes the first call reported; `out` is advanced
    // by OpenSSL within it.
    let written = unsafe { i2d_X509_PUBKEY(spki, &mut out) };
    if usize::try_from(written) != Ok(len) {
        return Err(openssl::error::ErrorStack::get());
    }
    Ok(der)
}
