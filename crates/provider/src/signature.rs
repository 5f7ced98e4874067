//! Signature "ECDSA" with the card's key: the host hashes (OpenSSL's digests), the applet
//! signs the digest (COMPUTE SIGNATURE in mode "pad and sign": 2 APDUs).
//!
//! `digest_sign_init` is called by libssl for every candidate signature algorithm while it
//! chooses one: it only checks the digest and never touches the card.

use std::ffi::{c_char, c_int, c_uchar, c_void};
use std::sync::Arc;

use openssl::hash::{Hasher, MessageDigest};

use super::abi::context::{self, dupctx, freectx, newctx_with_propq, with_ctx};
use super::abi::context::{Made, OperationContext};
use super::abi::dispatch::*;
use super::abi::ffi::*;
use super::abi::io::{bytes, OutBuf, Output};
use super::abi::params::{self, ParamsIn, ParamsOut};
use super::abi::{dispatch_table, param_table};
use super::config;
use super::error::{self, Reason};
use super::instance::Instance;
use super::key::Key;
use super::keymgmt::MAX_SIGNATURE;
use iotsafe_card::HashAlg;

#[derive(Clone)]
struct Context {
    instance: Instance,
    key: Option<Arc<Key>>,
    hash: HashAlg,
    hasher: Option<Hasher>,
}

impl Made for Context {
    fn instance(&self) -> Instance {
        self.instance
    }
}

impl OperationContext for Context {
    fn new(instance: Instance) -> Context {
        Context {
            instance,
            key: None,
            hash: HashAlg::Sha256,
            hasher: None,
        }
    }
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

/// Common part of sign_init and digest_sign_init: the key must have its private half on the
/// card. No card I/O. `key` is None to keep the previous key.
fn init(ctx: &mut Context, key: Option<Arc<Key>>, digest: Option<&str>) -> bool {
    if let Some(key) = key {
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
        Some(name) => set_digest(ctx, name),
    }
}

/// Sets the digest by name; an error names the digests the applet signs.
fn set_digest(ctx: &mut Context, name: &str) -> bool {
    match hash_of_name(name) {
        Some(hash) => {
            ctx.hash = hash;
            ctx.hasher = None;
            true
        }
        None => {
            error::raise(
                Reason::Unsupported,
                &format!("digest {name} (the applet signs SHA-256, SHA-384 and SHA-512 digests)"),
            );
            false
        }
    }
}

unsafe extern "C" fn sign_init(
    ctx: *mut c_void,
    keydata: *mut c_void,
    params: *const OSSL_PARAM,
) -> c_int {
    // SAFETY: context, key data of our keymgmt (or NULL) and parameters from OpenSSL.
    unsafe {
        let (key, params) = (context::share::<Key>(keydata), ParamsIn::new(params));
        with_ctx(ctx, 0, |ctx: &mut Context| {
            (init(ctx, key, None) && set_params(ctx, params)).into()
        })
    }
}

unsafe extern "C" fn digest_sign_init(
    ctx: *mut c_void,
    mdname: *const c_char,
    keydata: *mut c_void,
    params: *const OSSL_PARAM,
) -> c_int {
    // SAFETY: context, name, key data of our keymgmt (or NULL) and parameters from OpenSSL.
    unsafe {
        let (name, key) = (params::c_str(mdname), context::share::<Key>(keydata));
        let params = ParamsIn::new(params);
        with_ctx(ctx, 0, |ctx: &mut Context| {
            (init(ctx, key, name.as_deref()) && set_params(ctx, params)).into()
        })
    }
}

/// The caller's input, or an error raised for a length no buffer can have.
///
/// # Safety
/// As [`bytes`].
unsafe fn input<'a>(data: *const c_uchar, len: usize) -> Option<&'a [u8]> {
    // SAFETY: the function's contract.
    let input = unsafe { bytes(data, len) };
    if input.is_none() {
        error::raise(
            Reason::Internal,
            &format!("an input of {len} bytes at {data:?} cannot be read"),
        );
    }
    input
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
    // SAFETY: context and buffer from OpenSSL.
    unsafe {
        let Some(data) = input(data, len) else {
            return 0;
        };
        with_ctx(ctx, 0, |ctx: &mut Context| match hasher(ctx) {
            Some(h) => h.update(data).is_ok().into(),
            None => 0,
        })
    }
}

/// Signs `digest` on the card and writes the DER signature to the caller's buffer.
fn sign_digest_into(ctx: &Context, digest: &[u8], out: OutBuf<'_>) -> bool {
    let Some(key) = &ctx.key else { return false };
    let (Some(card), Some(private)) = (&key.card, &key.private) else {
        error::raise(
            Reason::NoPrivateKey,
            "this key has no private half on the card",
        );
        return false;
    };
    config::debug(format_args!(
        "sign {} digest with private key {private}",
        ctx.hash.name()
    ));
    match card.sign_digest(private, ctx.hash, digest) {
        Ok(der) => {
            let capacity = out.capacity();
            let written = out.write(&der);
            if !written {
                error::raise(
                    Reason::Internal,
                    &format!(
                        "signature buffer of {capacity} bytes for {} bytes",
                        der.len()
                    ),
                );
            }
            written
        }
        Err(e) => {
            error::raise_card(&e);
            false
        }
    }
}

/// The common start of the signing entry points: OpenSSL first asks for the size (no
/// buffer), which is answered here; `Some` is the buffer to sign into otherwise.
fn size_query(out: Option<Output<'_>>) -> Result<OutBuf<'_>, c_int> {
    match out {
        None => Err(0),
        Some(Output::SizeQuery(len)) => {
            *len = MAX_SIGNATURE;
            Err(1)
        }
        Some(Output::Buffer(buf)) => Ok(buf),
    }
}

/// Signs the host's digest on the card, or reports why hashing failed.
fn sign_hashed(
    ctx: &Context,
    digest: Result<openssl::hash::DigestBytes, openssl::error::ErrorStack>,
    out: OutBuf<'_>,
) -> bool {
    match digest {
        Ok(digest) => sign_digest_into(ctx, &digest, out),
        Err(e) => {
            error::raise(Reason::Internal, &format!("digest failed: {e}"));
            false
        }
    }
}

unsafe extern "C" fn digest_sign_final(
    ctx: *mut c_void,
    sig: *mut c_uchar,
    siglen: *mut usize,
    sigsize: usize,
) -> c_int {
    // SAFETY: arguments from OpenSSL.
    unsafe {
        let out = Output::new(sig, siglen, sigsize);
        with_ctx(ctx, 0, |ctx: &mut Context| {
            let out = match size_query(out) {
                Ok(out) => out,
                Err(answer) => return answer,
            };
            let Some(h) = hasher(ctx) else { return 0 };
            let digest = h.finish();
            ctx.hasher = None;
            sign_hashed(ctx, digest, out).into()
        })
    }
}

unsafe extern "C" fn digest_sign(
    ctx: *mut c_void,
    sig: *mut c_uchar,
    siglen: *mut usize,
    sigsize: usize,
    tbs: *const c_uchar,
    tbslen: usize,
) -> c_int {
    // SAFETY: arguments from OpenSSL.
    unsafe {
        let Some(data) = input(tbs, tbslen) else {
            return 0;
        };
        let out = Output::new(sig, siglen, sigsize);
        with_ctx(ctx, 0, |ctx: &mut Context| {
            let out = match size_query(out) {
                Ok(out) => out,
                Err(answer) => return answer,
            };
            let digest = openssl::hash::hash(message_digest(ctx.hash), data);
            sign_hashed(ctx, digest, out).into()
        })
    }
}

/// EVP_PKEY_sign: `tbs` is already a digest (of the context's hash, or told by its length).
fn sign(ctx: &mut Context, out: OutBuf<'_>, digest: &[u8]) -> bool {
    if digest.len() != ctx.hash.digest_len() {
        match digest.len() {
            32 => ctx.hash = HashAlg::Sha256,
            48 => ctx.hash = HashAlg::Sha384,
            64 => ctx.hash = HashAlg::Sha512,
            other => {
                error::raise(
                    Reason::Unsupported,
                    &format!("a {other}-byte digest (the applet signs SHA-256/384/512 digests)"),
                );
                return false;
            }
        }
    }
    sign_digest_into(ctx, digest, out)
}

unsafe extern "C" fn sign_entry(
    ctx: *mut c_void,
    sig: *mut c_uchar,
    siglen: *mut usize,
    sigsize: usize,
    tbs: *const c_uchar,
    tbslen: usize,
) -> c_int {
    // SAFETY: arguments from OpenSSL.
    unsafe {
        let Some(digest) = input(tbs, tbslen) else {
            return 0;
        };
        let out = Output::new(sig, siglen, sigsize);
        with_ctx(ctx, 0, |ctx: &mut Context| match size_query(out) {
            Ok(out) => sign(ctx, out, digest).into(),
            Err(answer) => answer,
        })
    }
}

const GETTABLE: &[ParamDescriptor] = param_table![
    param(b"algorithm-id\0", OSSL_PARAM_OCTET_STRING),
    param(b"digest\0", OSSL_PARAM_UTF8_STRING),
];

unsafe extern "C" fn gettable_ctx_params(
    _ctx: *mut c_void,
    _provctx: *mut c_void,
) -> *const OSSL_PARAM {
    GETTABLE.as_ptr() as *const OSSL_PARAM
}

unsafe extern "C" fn get_ctx_params(ctx: *mut c_void, out: *mut OSSL_PARAM) -> c_int {
    // SAFETY: context and parameters from OpenSSL.
    unsafe {
        let mut out = ParamsOut::new(out);
        with_ctx(ctx, 0, |ctx: &mut Context| {
            (out.octets(c"algorithm-id", &algorithm_id(ctx.hash))
                && out.utf8(c"digest", digest_name(ctx.hash)))
            .into()
        })
    }
}

const SETTABLE: &[ParamDescriptor] = param_table![
    param(b"digest\0", OSSL_PARAM_UTF8_STRING),
    param(b"properties\0", OSSL_PARAM_UTF8_STRING),
];

unsafe extern "C" fn settable_ctx_params(
    _ctx: *mut c_void,
    _provctx: *mut c_void,
) -> *const OSSL_PARAM {
    SETTABLE.as_ptr() as *const OSSL_PARAM
}

fn set_params(ctx: &mut Context, input: ParamsIn<'_>) -> bool {
    match input.utf8(c"digest") {
        Some(name) => set_digest(ctx, &name),
        None => true,
    }
}

unsafe extern "C" fn set_ctx_params(ctx: *mut c_void, input: *const OSSL_PARAM) -> c_int {
    // SAFETY: context and parameters from OpenSSL.
    unsafe {
        let input = ParamsIn::new(input);
        with_ctx(ctx, 0, |ctx: &mut Context| set_params(ctx, input).into())
    }
}

pub const FUNCTIONS: &[OSSL_DISPATCH] = dispatch_table![
    signature_newctx(newctx_with_propq::<Context>),
    signature_freectx(freectx::<Context>),
    signature_dupctx(dupctx::<Context>),
    signature_sign_init(sign_init),
    signature_sign(sign_entry),
    signature_digest_sign_init(digest_sign_init),
    signature_digest_sign_update(digest_sign_update),
    signature_digest_sign_final(digest_sign_final),
    signature_digest_sign(digest_sign),
    signature_get_ctx_params(get_ctx_params),
    signature_gettable_ctx_params(gettable_ctx_params),
    signature_set_ctx_params(set_ctx_params),
    signature_settable_ctx_params(settable_ctx_params),
];
