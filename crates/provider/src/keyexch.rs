//! Key exchange "ECDH" with the card's key: the peer's point is put into a public key slot
//! of the applet (PUT PUBLIC KEY), then COMPUTE DH returns the shared secret.

use std::ffi::{c_int, c_uchar, c_void};
use std::sync::Arc;

use super::error::{self, Reason};
use super::ffi::*;
use super::keymgmt::{self, Key};
use super::{dispatch, dispatch_end, guard_in, Instance};

#[derive(Clone)]
struct Context {
    instance: Instance,
    key: Option<Arc<Key>>,
    peer: Option<Arc<Key>>,
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

unsafe extern "C" fn newctx(provctx: *mut c_void) -> *mut c_void {
    // SAFETY: the provctx of this call.
    let instance = unsafe { Instance::from_provctx(provctx) };
    guard_in(instance, std::ptr::null_mut(), || match instance {
        Some(instance) => Box::into_raw(Box::new(Context {
            instance,
            key: None,
            peer: None,
        })) as *mut c_void,
        None => std::ptr::null_mut(),
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
        match unsafe { context(ctx) } {
            Some(ctx) => Box::into_raw(Box::new(ctx.clone())) as *mut c_void,
            None => std::ptr::null_mut(),
        }
    })
}

unsafe extern "C" fn init(
    ctx: *mut c_void,
    keydata: *mut c_void,
    _params: *const OSSL_PARAM,
) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: context and key data from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            let Some(key) = keymgmt::share(keydata) else {
                return 0;
            };
            if key.private.is_none() {
                error::raise(
                    Reason::NoPrivateKey,
                    "ECDH needs the private key on the card",
                );
                return 0;
            }
            ctx.key = Some(key);
            1
        }
    })
}

unsafe extern "C" fn set_peer(ctx: *mut c_void, peer: *mut c_void) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: context and key data from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            let Some(peer) = keymgmt::share(peer) else {
                return 0;
            };
            if peer.point.is_empty() {
                error::raise(Reason::Unsupported, "the ECDH peer key has no public point");
                return 0;
            }
            ctx.peer = Some(peer);
            1
        }
    })
}

unsafe extern "C" fn derive(
    ctx: *mut c_void,
    secret: *mut c_uchar,
    secretlen: *mut usize,
    outlen: usize,
) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: arguments from OpenSSL.
        unsafe {
            let Some(ctx) = context(ctx) else { return 0 };
            if secretlen.is_null() {
                return 0;
            }
            let (Some(key), Some(peer)) = (&ctx.key, &ctx.peer) else {
                error::raise(Reason::Internal, "ECDH without a key or a peer");
                return 0;
            };
            let size = key.curve.field_len();
            if secret.is_null() {
                *secretlen = size;
                return 1;
            }
            if key.curve != peer.curve {
                error::raise(Reason::Unsupported, "the ECDH peer key is on another curve");
                return 0;
            }
            let (Some(card), Some(private)) = (&key.card, &key.private) else {
                return 0;
            };
            match card.compute_dh(private, &key.dh_peer, &peer.point) {
                Ok(shared) if shared.len() <= outlen => {
                    std::ptr::copy_nonoverlapping(shared.as_ptr(), secret, shared.len());
                    *secretlen = shared.len();
                    1
                }
                Ok(shared) => {
                    error::raise(
                        Reason::Internal,
                        &format!("secret buffer of {outlen} bytes for {} bytes", shared.len()),
                    );
                    0
                }
                Err(e) => {
                    error::raise_card(&e);
                    0
                }
            }
        }
    })
}

pub static FUNCTIONS: [OSSL_DISPATCH; 7] = [
    dispatch!(OSSL_FUNC_KEYEXCH_NEWCTX, newctx),
    dispatch!(OSSL_FUNC_KEYEXCH_FREECTX, freectx),
    dispatch!(OSSL_FUNC_KEYEXCH_DUPCTX, dupctx),
    dispatch!(OSSL_FUNC_KEYEXCH_INIT, init),
    dispatch!(OSSL_FUNC_KEYEXCH_SET_PEER, set_peer),
    dispatch!(OSSL_FUNC_KEYEXCH_DERIVE, derive),
    dispatch_end!(),
];
