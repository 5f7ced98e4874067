//! Key exchange "ECDH" with the card's key: the peer's point is put into a public key slot
//! of the applet (PUT PUBLIC KEY), then COMPUTE DH returns the shared secret.

use std::ffi::{c_int, c_uchar, c_void};
use std::sync::Arc;

use super::abi::context::{self, dupctx, freectx, newctx, with_ctx, Made, OperationContext};
use super::abi::dispatch::*;
use super::abi::dispatch_table;
use super::abi::ffi::*;
use super::abi::io::Output;
use super::error::{self, Reason};
use super::instance::Instance;
use super::key::Key;

#[derive(Clone)]
struct Context {
    instance: Instance,
    key: Option<Arc<Key>>,
    peer: Option<Arc<Key>>,
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
            peer: None,
        }
    }
}

fn init(ctx: &mut Context, key: Option<Arc<Key>>) -> bool {
    let Some(key) = key else { return false };
    if key.private.is_none() {
        error::raise(
            Reason::NoPrivateKey,
            "ECDH needs the private key on the card",
        );
        return false;
    }
    ctx.key = Some(key);
    true
}

unsafe extern "C" fn init_entry(
    ctx: *mut c_void,
    keydata: *mut c_void,
    _params: *const OSSL_PARAM,
) -> c_int {
    // SAFETY: context and key data of our keymgmt from OpenSSL.
    unsafe {
        let key = context::share::<Key>(keydata);
        with_ctx(ctx, 0, |ctx: &mut Context| init(ctx, key).into())
    }
}

fn set_peer(ctx: &mut Context, peer: Option<Arc<Key>>) -> bool {
    let Some(peer) = peer else { return false };
    if peer.point.is_empty() {
        error::raise(Reason::Unsupported, "the ECDH peer key has no public point");
        return false;
    }
    ctx.peer = Some(peer);
    true
}

unsafe extern "C" fn set_peer_entry(ctx: *mut c_void, peer: *mut c_void) -> c_int {
    // SAFETY: context and key data of our keymgmt from OpenSSL.
    unsafe {
        let peer = context::share::<Key>(peer);
        with_ctx(ctx, 0, |ctx: &mut Context| set_peer(ctx, peer).into())
    }
}

fn derive(ctx: &Context, out: Option<Output<'_>>) -> bool {
    let Some(out) = out else { return false };
    let (Some(key), Some(peer)) = (&ctx.key, &ctx.peer) else {
        error::raise(Reason::Internal, "ECDH without a key or a peer");
        return false;
    };
    let out = match out {
        Output::SizeQuery(len) => {
            *len = key.curve.field_len();
            return true;
        }
        Output::Buffer(out) => out,
    };
    if key.curve != peer.curve {
        error::raise(Reason::Unsupported, "the ECDH peer key is on another curve");
        return false;
    }
    let (Some(card), Some(private)) = (&key.card, &key.private) else {
        return false;
    };
    match card.compute_dh(private, &key.dh_peer, &peer.point) {
        Ok(shared) => {
            let capacity = out.capacity();
            let written = out.write(&shared);
            if !written {
                error::raise(
                    Reason::Internal,
                    &format!(
                        "secret buffer of {capacity} bytes for {} bytes",
                        shared.len()
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

unsafe extern "C" fn derive_entry(
    ctx: *mut c_void,
    secret: *mut c_uchar,
    secretlen: *mut usize,
    outlen: usize,
) -> c_int {
    // SAFETY: arguments from OpenSSL.
    unsafe {
        let out = Output::new(secret, secretlen, outlen);
        with_ctx(ctx, 0, |ctx: &mut Context| derive(ctx, out).into())
    }
}

pub const FUNCTIONS: &[OSSL_DISPATCH] = dispatch_table![
    keyexch_newctx(newctx::<Context>),
    keyexch_freectx(freectx::<Context>),
    keyexch_dupctx(dupctx::<Context>),
    keyexch_init(init_entry),
    keyexch_set_peer(set_peer_entry),
    keyexch_derive(derive_entry),
];
