//! The application's side of the provider, for a program that links this crate (the `iotsafe`
//! tool): a library context of its own in which `iotsafe` is registered as a built-in provider
//! (`OSSL_PROVIDER_add_builtin` with [`crate::OSSL_provider_init`], the entry point openssl.cnf
//! reaches in the module) beside OpenSSL's default provider. Keys decoded in it and signatures
//! made in it go through the same dispatch tables as in any OpenSSL program; only the loading
//! differs, and the user's openssl.cnf plays no part. [`crate::builtin`] is the safe face.
#![allow(non_camel_case_types)] // OpenSSL's names

use std::ffi::{c_char, c_int, c_void, CStr};

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::x509::X509Req;
use openssl_sys::{EVP_MD_CTX, EVP_PKEY, EVP_PKEY_CTX, OSSL_PROVIDER, X509_REQ};

use super::ffi::{OSSL_CORE_HANDLE, OSSL_DISPATCH, OSSL_LIB_CTX};

type ProviderInitFn = unsafe extern "C" fn(
    *const OSSL_CORE_HANDLE,
    *const OSSL_DISPATCH,
    *mut *const OSSL_DISPATCH,
    *mut *mut c_void,
) -> c_int;

extern "C" {
    fn OSSL_PROVIDER_add_builtin(
        libctx: *mut OSSL_LIB_CTX,
        name: *const c_char,
        init: ProviderInitFn,
    ) -> c_int;
    fn PEM_read_bio_PrivateKey_ex(
        bio: *mut openssl_sys::BIO,
        out: *mut *mut EVP_PKEY,
        cb: *mut c_void,
        u: *mut c_void,
        libctx: *mut OSSL_LIB_CTX,
        propq: *const c_char,
    ) -> *mut EVP_PKEY;
    fn EVP_DigestSignInit_ex(
        ctx: *mut EVP_MD_CTX,
        pctx: *mut *mut EVP_PKEY_CTX,
        mdname: *const c_char,
        libctx: *mut OSSL_LIB_CTX,
        props: *const c_char,
        pkey: *mut EVP_PKEY,
        params: *const c_void,
    ) -> c_int;
    fn X509_REQ_sign_ctx(req: *mut X509_REQ, ctx: *mut EVP_MD_CTX) -> c_int;
}

/// A library context with the built-in `iotsafe` and OpenSSL's `default` provider loaded.
/// Everything made in it (keys, signing contexts) must be gone before it is dropped.
pub struct BuiltinContext {
    libctx: *mut OSSL_LIB_CTX,
    providers: Vec<*mut OSSL_PROVIDER>,
}

impl BuiltinContext {
    pub fn new(name: &CStr) -> Result<BuiltinContext, ErrorStack> {
        // SAFETY: a new context, owned by the value returned (freed in drop, also on the
        // error paths below).
        let libctx = unsafe { openssl_sys::OSSL_LIB_CTX_new() };
        if libctx.is_null() {
            return Err(ErrorStack::get());
        }
        let mut context = BuiltinContext {
            libctx,
            providers: Vec::new(),
        };
        // SAFETY: our context, a NUL-terminated name and the provider's entry point.
        if unsafe { OSSL_PROVIDER_add_builtin(libctx, name.as_ptr(), crate::OSSL_provider_init) }
            != 1
        {
            return Err(ErrorStack::get());
        }
        // The default provider does everything but the card key: digests, verification.
        for provider in [name, c"default"] {
            // SAFETY: our context and a NUL-terminated name; the handle is unloaded in drop.
            let loaded = unsafe { openssl_sys::OSSL_PROVIDER_load(libctx, provider.as_ptr()) };
            if loaded.is_null() {
                return Err(ErrorStack::get());
            }
            context.providers.push(loaded);
        }
        Ok(context)
    }

    /// A private key decoded from PEM text in this context (a key-reference file's text
    /// decodes to the card's key through the provider's decoders).
    pub fn decode_private_key(&self, pem: &[u8]) -> Result<PKey<Private>, ErrorStack> {
        let length = c_int::try_from(pem.len()).map_err(|_| ErrorStack::get())?;
        // SAFETY: a read-only memory BIO over `pem`, which outlives it (freed below).
        let bio = unsafe { openssl_sys::BIO_new_mem_buf(pem.as_ptr().cast(), length) };
        if bio.is_null() {
            return Err(ErrorStack::get());
        }
        // SAFETY: the BIO above, no password callback, our context and no property query.
        let key = unsafe {
            let key = PEM_read_bio_PrivateKey_ex(
                bio,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                self.libctx,
                std::ptr::null(),
            );
            super::ffi::BIO_free(bio);
            key
        };
        if key.is_null() {
            return Err(ErrorStack::get());
        }
        // SAFETY: a new key whose one reference passes to the PKey.
        Ok(unsafe { PKey::from_ptr(key) })
    }

    /// Signs `request` with `key`, digest `digest`, the signature fetched in this context (so
    /// from the provider that holds the key).
    pub fn sign_request(
        &self,
        request: X509Req,
        key: &PKeyRef<Private>,
        digest: &CStr,
    ) -> Result<X509Req, ErrorStack> {
        // SAFETY: a new digest context, freed below on every path.
        let md_ctx = unsafe { openssl_sys::EVP_MD_CTX_new() };
        if md_ctx.is_null() {
            return Err(ErrorStack::get());
        }
        // SAFETY: our digest context, a NUL-terminated digest name, our library context and
        // a key that outlives the call; the request is owned here, so nothing else sees it
        // change.
        let signed = unsafe {
            EVP_DigestSignInit_ex(
                md_ctx,
                std::ptr::null_mut(),
                digest.as_ptr(),
                self.libctx,
                std::ptr::null(),
                key.as_ptr(),
                std::ptr::null(),
            ) == 1
                && X509_REQ_sign_ctx(request.as_ptr(), md_ctx) > 0
        };
        // SAFETY: the context made above, no longer used.
        unsafe { openssl_sys::EVP_MD_CTX_free(md_ctx) };
        if signed {
            Ok(request)
        } else {
            Err(ErrorStack::get())
        }
    }
}

impl Drop for BuiltinContext {
    fn drop(&mut self) {
        // SAFETY: the handles and context made in `new`, each released once; the safe face
        // keeps every key made in the context from outliving it.
        unsafe {
            for provider in self.providers.drain(..).rev() {
                openssl_sys::OSSL_PROVIDER_unload(provider);
            }
            super::ffi::OSSL_LIB_CTX_free(self.libctx);
        }
    }
}
