//! The part of OpenSSL's DANE API (libssl 1.1.0+) that the `openssl` crate does not bind.
//!
//! Each wrapper takes the crate's safe reference types, so the raw pointers never leave this
//! file.

use std::ffi::CString;
use std::os::raw::{c_int, c_uchar, c_ulong};

use foreign_types::ForeignTypeRef;
use openssl::ssl::SslRef;

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

/// Attaches `data` to an `SSL` reached through a shared reference (inside a verify callback,
/// where OpenSSL hands out the `SSL` only that way). Must not be used on an index already set
/// for this `SSL` (the old value would leak); callers check first.
pub(crate) fn set_ssl_ex_data<T>(
    ssl: &SslRef,
    index: openssl::ex_data::Index<openssl::ssl::Ssl, T>,
    data: T,
) {
    // SAFETY: the openssl crate stores ex_data as a leaked Box<T> and frees it with the free
    // callback registered by `Ssl::new_ex_index::<T>`; this is the same representation.
    unsafe {
        let raw = Box::into_raw(Box::new(data)) as *mut libc::c_void;
        if openssl_sys::SSL_set_ex_data(ssl.as_ptr(), index.as_raw(), raw) != 1 {
            drop(Box::from_raw(raw as *mut T));
        }
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
    fn prepare(&self, ssl: &mut SslRef) -> Result<Vec<String>, String>;

    /// Told when OpenSSL's verification of a prepared connection failed (e.g. no TLSA record
    /// matched), with OpenSSL's reason.
    fn rejected(&self, _ssl: &SslRef, _why: &str) {}
}

/// Replaces the chain verification of every connection made from `ctx` by: `verifier.prepare`
/// on the connection's `SSL`, then OpenSSL's own verification (with DANE when records were
/// added). The verifier lives as long as the context (it is kept in the context's ex_data).
pub(crate) fn install_chain_verifier<V: ChainVerifier>(
    ctx: &mut openssl::ssl::SslContextBuilder,
    verifier: V,
) -> Result<(), String> {
    let index = openssl::ssl::SslContext::new_ex_index::<V>().map_err(|e| e.to_string())?;
    ctx.set_ex_data(index, verifier);
    // SAFETY: `ctx` is live; DANE must be enabled on the context before any SSL uses it; `arg`
    // is the boxed verifier in the context's ex_data, freed only with the context, after its
    // last callback.
    unsafe {
        let arg = openssl_sys::SSL_CTX_get_ex_data(ctx.as_ptr(), index.as_raw());
        if arg.is_null() {
            return Err("cannot keep the verifier on the context".into());
        }
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
    std::panic::catch_unwind(|| {
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
                        let why = openssl::x509::X509VerifyResult::from_raw(code);
                        verifier.rejected(ssl_ref, why.error_string());
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
