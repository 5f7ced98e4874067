//! Signature "ECDSA" with the card's key: the host hashes (OpenSSL's digests), the applet
//! signs the digest (COMPUTE SIGNATURE in mode "pad and sign": 2 APDUs).
//!
//! `digest_sign_init` is called by libssl for every candidate signature algorithm while it
//! chooses one: it only checks the digest and never touches the card.

use std::ffi::{c_char, c_int, c_uchar, c_void};
use std::sync::Arc;

use openssl::hash::{Hasher, MessageDigest};

use super::config;
use super::error::{self, Reason};
use super::ffi::*;
use super::keymgmt::{self, Key, MAX_SIGNATURE};
use super::{dispatch, dispatch_end, guard_in, params, Instance};
use iotsafe_card::HashAlg;

struct Context {
    instance: Instance,
    key: Option<Arc<Key>>,
    hash: HashAlg,
    hasher: Option<Hasher>,
}

fn hash_of_name(name: &str) -> Option<HashAlg> {
    match name.to_ascii_uppercase().replace('_', "-").as_str() {
        "SHA256" | "SHA-256" | "SHA2-256" | "2.16.840.1.101.3.4.2.1" => Some(HashAlg::Sha256),
        "SHA384" | "SHA-384" | "SHA2-384" | "2.16.840.1.101.3.4.2.2" => Some(HashAlg::Sha384),
        "SHA512" | "SHA-512" | "SHA2-512" | "2.16.840.1.101.3.4.2.3" => Some(HashAlg::Sha512),
        _ => None,
    }
}

fn message_digest(hash: HashAlg) -> MessageDigest {
    match hash {
        HashAlg::Sha256 => MessageDigest::sha256(),
        HashAlg::Sha384 => MessageDigest::sha384(),
        HashAlg::Sha512 => MessageDigest::sha512(),
    }
}

fn digest_name(hash: HashAlg) -> &'static str {
    match hash {
        HashAlg::Sha256 => "SHA2-256",
        HashAlg::Sha384 => "SHA2-384",
        HashAlg::Sha512 => "SHA2-512",
    }
}

/// DER AlgorithmIdentifier of ecdsa-with-SHA256/384/512 (no parameters), for certificates
/// and CSRs.
fn algorithm_id(hash: HashAlg) -> [u8; 12] {
    let last = match hash {
        HashAlg::Sha256 => 0x02,
        HashAlg::Sha384 => 0x03,
        HashAlg::Sha512 => 0x04,
    };
    [
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, last,
    ]
}

/// The instance a context was made through (its functions get no provctx).
///
/// # Safety
/// `ctx` is NULL or a context from `newctx`.
unsafe fn instance_of(ctx: *mut c_void) -> Option<Instance> {
    context(ctx).map(|ctx| ctx.instance)
}

/// # Safety
/// `ctx` is NULL or a context from `newctx`.
unsafe fn context<'a>(ctx: *mut c_void) -> Option<&'a mut Context> {
    (ctx as *mut Context).as_mut()
}

unsafe extern "C" fn newctx(provctx: *mut c_void, _propq: *const c_char) -> *mut c_void {
    // SAFETY: the provctx of this call.
    let instance = unsafe { Instance::from_provctx(provctx) };
    guard_in(instance, std::ptr::null_mut(), || {
        let Some(instance) = instance else {
            return std::ptr::null_mut();
        };
        Box::into_raw(Box::new(Context {
            instance,
            key: None,
            hash: HashAlg::Sha256,
            hasher: None,
        })) as *mut c_void
    })
}

unsafe extern "C" fn freectx(ctx: *mut c_void) {
    guard_in(instance_of(ctx), (), || {
        if !ctx.is_null() {
            // SAFETY: a context from newctx/dupctx, freed once.
            drop(unsafe { Box::from_raw(ctx as *mut Context) });
        }
    })
}

unsafe extern "C" fn dupctx(ctx: *mut c_void) -> *mut c_void {
    guard_in(instance_of(ctx), std::ptr::null_mut(), || {
        // SAFETY: a context from newctx.
        let Some(ctx) = (unsafe { context(ctx) }) else {
            return std::ptr::null_mut();
        };
        Box::into_raw(Box::new(Context {
            instance: ctx.instance,
            key: ctx.key.clone(),
            hash: ctx.hash,
            hasher: ctx.hasher.clone(),
        })) as *mut c_void
    })
}

/// Common part of sign_init and digest_sign_init: the key must have its private half on the
/// card. No card I/O.
fn init(ctx: &mut Context, keydata: *mut c_void, digest: Option<&str>) -> bool {
    // SAFETY: key data from OpenSSL (or NULL to keep the previous key).
    if let Some(key) = unsafe { keymgmt::share(keydata) } {
        ctx.key = Some(key);
    }
    match &ctx.key {
        Some(key) if key.private.is_some() => {}
        Some(_) => {
            error::raise(
                Reason::NoPrivateKey,
                "this key has no private half on the card (a public key cannot sign)",
            );
            return false;
        }
        None => {
            error::raise(Reason::Internal, "signature initialised without a key");
            return false;
        }
    }
    ctx.hasher = None;
    match digest.filter(|d| !d.is_empty()) {
        None => true,
        Some(name) => match hash_of_name(name) {
            Some(hash) => {
                ctx.hash = hash;
                true
            }
            None => {
                error::raise(
                    Reason::Unsupported,
                    &format!(
                        "digest {name} (the applet signs SHA-256, SHA-384 and SHA-512 digests)"
                    ),
                );
                false
            }
        },
    }
}

unsafe extern "C" fn sign_init(
    ctx: *mut c_void,
    keydata: *mut c_void,
    params: *const OSSL_PARAM,
) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: context and parameters from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            (init(ctx, keydata, None) && set_params(ctx, params)).into()
        }
    })
}

unsafe extern "C" fn digest_sign_init(
    ctx: *mut c_void,
    mdname: *const c_char,
    keydata: *mut c_void,
    params: *const OSSL_PARAM,
) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: context, name and parameters from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            let name = params::c_str(mdname);
            (init(ctx, keydata, name.as_deref()) && set_params(ctx, params)).into()
        }
    })
}

fn hasher(ctx: &mut Context) -> Option<&mut Hasher> {
    if ctx.hasher.is_none() {
        match Hasher::new(message_digest(ctx.hash)) {
            Ok(h) => ctx.hasher = Some(h),
            Err(e) => {
                error::raise(
                    Reason::Internal,
                    &format!("cannot start {}: {e}", ctx.hash.name()),
                );
                return None;
            }
        }
    }
    ctx.hasher.as_mut()
}

unsafe extern "C" fn digest_sign_update(
    ctx: *mut c_void,
    data: *const c_uchar,
    len: usize,
) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: context and buffer from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            let data = if len == 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(data, len)
            };
            match hasher(ctx) {
                Some(h) => h.update(data).is_ok().into(),
                None => 0,
            }
        }
    })
}

/// Signs `digest` on the card and writes the DER signature to the caller's buffer.
///
/// # Safety
/// `sig` is NULL or has `sigsize` bytes; `siglen` is valid.
unsafe fn sign_digest_into(
    ctx: &Context,
    digest: &[u8],
    sig: *mut c_uchar,
    siglen: *mut usize,
    sigsize: usize,
) -> c_int {
    let Some(key) = &ctx.key else { return 0 };
    let (Some(card), Some(private)) = (&key.card, &key.private) else {
        error::raise(
            Reason::NoPrivateKey,
            "this key has no private half on the card",
        );
        return 0;
    };
    config::debug(format_args!(
        "sign {} digest with private key {private}",
        ctx.hash.name()
    ));
    match card.sign_digest(private, ctx.hash, digest) {
        Ok(der) => {
            if der.len() > sigsize {
                error::raise(
                    Reason::Internal,
                    &format!(
                        "signature buffer of {sigsize} bytes for {} bytes",
                        der.len()
                    ),
                );
                return 0;
            }
            std::ptr::copy_nonoverlapping(der.as_ptr(), sig, der.len());
            *siglen = der.len();
            1
        }
        Err(e) => {
            error::raise_card(&e);
            0
        }
    }
}

/// The common start of the signing entry points: OpenSSL first asks for the size (`sig` NULL);
/// `Some` is the answer to give when this call is such a query (or has no `siglen`).
///
/// # Safety
/// `siglen`, when not NULL, points to writable memory (OpenSSL's contract).
unsafe fn size_query(sig: *mut c_uchar, siglen: *mut usize) -> Option<c_int> {
    if siglen.is_null() {
        return Some(0);
    }
    if sig.is_null() {
        // SAFETY: checked non-NULL above; OpenSSL passes a valid pointer.
        unsafe { *siglen = MAX_SIGNATURE };
        return Some(1);
    }
    None
}

/// Signs the host's digest on the card, or reports why hashing failed.
///
/// # Safety
/// As [`sign_digest_into`]: `sig`/`siglen` from OpenSSL.
unsafe fn sign_hashed(
    ctx: &Context,
    digest: Result<openssl::hash::DigestBytes, openssl::error::ErrorStack>,
    sig: *mut c_uchar,
    siglen: *mut usize,
    sigsize: usize,
) -> c_int {
    match digest {
        // SAFETY: the caller's pointers, passed on unchanged.
        Ok(digest) => unsafe { sign_digest_into(ctx, &digest, sig, siglen, sigsize) },
        Err(e) => {
            error::raise(Reason::Internal, &format!("digest failed: {e}"));
            0
        }
    }
}

unsafe extern "C" fn digest_sign_final(
    ctx: *mut c_void,
    sig: *mut c_uchar,
    siglen: *mut usize,
    sigsize: usize,
) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: arguments from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            if let Some(answer) = size_query(sig, siglen) {
                return answer;
            }
            let Some(h) = hasher(ctx) else { return 0 };
            let digest = h.finish();
            ctx.hasher = None;
            sign_hashed(ctx, digest, sig, siglen, sigsize)
        }
    })
}

unsafe extern "C" fn digest_sign(
    ctx: *mut c_void,
    sig: *mut c_uchar,
    siglen: *mut usize,
    sigsize: usize,
    tbs: *const c_uchar,
    tbslen: usize,
) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: arguments from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            if let Some(answer) = size_query(sig, siglen) {
                return answer;
            }
            let data = if tbslen == 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(tbs, tbslen)
            };
            let digest = openssl::hash::hash(message_digest(ctx.hash), data);
            sign_hashed(ctx, digest, sig, siglen, sigsize)
        }
    })
}

/// EVP_PKEY_sign: `tbs` is already a digest (of the context's hash, or told by its length).
unsafe extern "C" fn sign(
    ctx: *mut c_void,
    sig: *mut c_uchar,
    siglen: *mut usize,
    sigsize: usize,
    tbs: *const c_uchar,
    tbslen: usize,
) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: arguments from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            if let Some(answer) = size_query(sig, siglen) {
                return answer;
            }
            if tbslen != ctx.hash.digest_len() {
                match tbslen {
                    32 => ctx.hash = HashAlg::Sha256,
                    48 => ctx.hash = HashAlg::Sha384,
                    64 => ctx.hash = HashAlg::Sha512,
                    _ => {
                        error::raise(
                            Reason::Unsupported,
                            &format!(
                                "a {tbslen}-byte digest (the applet signs SHA-256/384/512 digests)"
                            ),
                        );
                        return 0;
                    }
                }
            }
            let digest = std::slice::from_raw_parts(tbs, tbslen).to_vec();
            sign_digest_into(ctx, &digest, sig, siglen, sigsize)
        }
    })
}

static GETTABLE: [ParamDescriptor; 3] = [
    param(b"algorithm-id\0", OSSL_PARAM_OCTET_STRING),
    param(b"digest\0", OSSL_PARAM_UTF8_STRING),
    PARAM_END,
];

unsafe extern "C" fn gettable_ctx_params(
    _ctx: *mut c_void,
    _provctx: *mut c_void,
) -> *const OSSL_PARAM {
    GETTABLE.as_ptr() as *const OSSL_PARAM
}

unsafe extern "C" fn get_ctx_params(ctx: *mut c_void, out: *mut OSSL_PARAM) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: context and parameters from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            (params::set_octets(out, c"algorithm-id", &algorithm_id(ctx.hash))
                && params::set_utf8(out, c"digest", digest_name(ctx.hash)))
            .into()
        }
    })
}

static SETTABLE: [ParamDescriptor; 3] = [
    param(b"digest\0", OSSL_PARAM_UTF8_STRING),
    param(b"properties\0", OSSL_PARAM_UTF8_STRING),
    PARAM_END,
];

unsafe extern "C" fn settable_ctx_params(
    _ctx: *mut c_void,
    _provctx: *mut c_void,
) -> *const OSSL_PARAM {
    SETTABLE.as_ptr() as *const OSSL_PARAM
}

/// # Safety
/// `input` is NULL or a parameter array.
unsafe fn set_params(ctx: &mut Context, input: *const OSSL_PARAM) -> bool {
    if let Some(name) = params::get_utf8(input, c"digest") {
        match hash_of_name(&name) {
            Some(hash) => {
                ctx.hash = hash;
                ctx.hasher = None;
            }
            None => {
                error::raise(
                    Reason::Unsupported,
                    &format!(
                        "digest {name} (the applet signs SHA-256, SHA-384 and SHA-512 digests)"
                    ),
                );
                return false;
            }
        }
    }
    true
}

unsafe extern "C" fn set_ctx_params(ctx: *mut c_void, input: *const OSSL_PARAM) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: context and parameters from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            set_params(ctx, input).into()
        }
    })
}

pub static FUNCTIONS: [OSSL_DISPATCH; 15] = [
    dispatch!(OSSL_FUNC_SIGNATURE_NEWCTX, newctx),
    dispatch!(OSSL_FUNC_SIGNATURE_FREECTX, freectx),
    dispatch!(OSSL_FUNC_SIGNATURE_DUPCTX, dupctx),
    dispatch!(OSSL_FUNC_SIGNATURE_SIGN_INIT, sign_init),
    dispatch!(OSSL_FUNC_SIGNATURE_SIGN, sign),
    dispatch!(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, digest_sign_init),
    dispatch!(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, digest_sign_update),
    dispatch!(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, digest_sign_final),
    dispatch!(OSSL_FUNC_SIGNATURE_DIGEST_SIGN, digest_sign),
    dispatch!(OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, get_ctx_params),
    dispatch!(OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, gettable_ctx_params),
    dispatch!(OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, set_ctx_params),
    dispatch!(OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, settable_ctx_params),
    dispatch_end!(),
    dispatch_end!(),
];
