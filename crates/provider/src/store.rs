//! Store for `iotsafe:` URIs (`openssl pkey -in iotsafe:key-id=01`, `OSSL_STORE_open`).
//!
//! The private key is handed over by reference to this provider's key management (see
//! [`keymgmt::offer`]), so that it lands there without a detour through an encoding; the
//! public key as SubjectPublicKeyInfo DER (for whichever provider decodes it) and the
//! certificate as its DER.

use std::ffi::{c_char, c_int, c_void, CStr};

use super::abi::context::{drop_ctx, into_ctx, with_ctx, Made};
use super::abi::dispatch::*;
use super::abi::ffi::*;
use super::abi::params::{self, Callback, Param, ParamsIn};
use super::abi::{dispatch_table, guard_in, param_table};
use super::card;
use super::config;
use super::error::{self, Reason};
use super::instance::Instance;
use super::key::Key;
use super::keymgmt;
use super::uri::{KeyUri, ObjectType};
use crate::keys;
use iotsafe_card::Target;

struct Context {
    instance: Instance,
    uri: KeyUri,
    expect: c_int,
    pending: Option<Vec<ObjectType>>,
}

impl Made for Context {
    fn instance(&self) -> Instance {
        self.instance
    }
}

fn open(instance: Instance, text: Option<String>) -> *mut c_void {
    let Some(text) = text else {
        return std::ptr::null_mut();
    };
    match KeyUri::parse(&text) {
        Ok(uri) => into_ctx(Context {
            instance,
            uri,
            expect: 0,
            pending: None,
        }),
        Err(e) => {
            error::raise(Reason::BadUri, &e);
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn open_entry(provctx: *mut c_void, text: *const c_char) -> *mut c_void {
    // SAFETY: the provctx of this call and a NUL-terminated URI from OpenSSL.
    let (instance, text) = unsafe { (Instance::from_provctx(provctx), params::c_str(text)) };
    guard_in(instance, std::ptr::null_mut(), || match instance {
        Some(instance) => open(instance, text),
        None => std::ptr::null_mut(),
    })
}

const SETTABLE: &[ParamDescriptor] = param_table![param(b"expect\0", OSSL_PARAM_INTEGER)];

unsafe extern "C" fn settable_ctx_params(_provctx: *mut c_void) -> *const OSSL_PARAM {
    SETTABLE.as_ptr() as *const OSSL_PARAM
}

unsafe extern "C" fn set_ctx_params(ctx: *mut c_void, input: *const OSSL_PARAM) -> c_int {
    // SAFETY: context and parameters from OpenSSL.
    unsafe {
        let input = ParamsIn::new(input);
        with_ctx(ctx, 0, |ctx: &mut Context| {
            if let Some(expect) = input.int(c"expect") {
                ctx.expect = expect;
            }
            1
        })
    }
}

fn objects_for(uri: &KeyUri, expect: c_int) -> Vec<ObjectType> {
    if let Some(object) = uri.object {
        return vec![object];
    }
    match expect {
        STORE_INFO_PKEY => vec![ObjectType::Private],
        STORE_INFO_PUBKEY => vec![ObjectType::Public],
        STORE_INFO_CERT => vec![ObjectType::Cert],
        _ => vec![ObjectType::Private, ObjectType::Cert],
    }
}

/// Passes an encoded object; `structure` and the data type tell the decoders what it is.
fn emit_encoded(
    callback: Callback,
    object_type: c_int,
    structure: Option<&'static CStr>,
    data: &[u8],
) -> c_int {
    let mut params = vec![Param::Int(c"type", object_type)];
    if let Some(structure) = structure {
        params.push(Param::Utf8(c"data-type", c"EC"));
        params.push(Param::Utf8(c"data-structure", structure));
        params.push(Param::Utf8(c"input-type", c"DER"));
    }
    params.push(Param::Octets(c"data", data));
    callback.call(&params)
}

/// The next object of the URI, to the callback; 0 when there is none or on error.
fn load(ctx: &mut Context, callback: Callback) -> c_int {
    let pending = ctx
        .pending
        .get_or_insert_with(|| objects_for(&ctx.uri, ctx.expect));
    if pending.is_empty() {
        return 0;
    }
    let object = pending.remove(0);
    let Some(configured) = ctx.instance.settings() else {
        return 0;
    };
    let target = match ctx.uri.settings_over(&configured) {
        Ok(target) => target,
        Err(e) => {
            error::raise(Reason::BadUri, &e);
            return 0;
        }
    };
    match object {
        ObjectType::Private => load_private(ctx, &target, callback),
        ObjectType::Public => load_public(ctx, &target, callback),
        ObjectType::Cert => load_cert(ctx, &target, callback),
    }
}

fn load_private(ctx: &Context, target: &Target, callback: Callback) -> c_int {
    match Key::from_card(ctx.instance, target) {
        Ok(key) => {
            config::debug(format_args!(
                "store: private key of {} handed over by reference",
                ctx.uri
            ));
            keymgmt::offer(key, callback)
        }
        Err((reason, message)) => {
            error::raise(reason, &format!("{message} (URI {})", ctx.uri));
            0
        }
    }
}

fn load_public(ctx: &Context, target: &Target, callback: Callback) -> c_int {
    let result = Key::from_card(ctx.instance, target).and_then(|key| {
        keys::public_key_from_point(key.curve, &key.point)
            .and_then(|k| k.public_key_to_der())
            .map_err(|e| (Reason::Internal, e.to_string()))
    });
    match result {
        Ok(der) => emit_encoded(
            callback,
            OSSL_OBJECT_PKEY,
            Some(c"SubjectPublicKeyInfo"),
            &der,
        ),
        Err((reason, message)) => {
            error::raise(reason, &message);
            0
        }
    }
}

fn load_cert(ctx: &mut Context, target: &Target, callback: Callback) -> c_int {
    let card = card::card_for(target);
    let file = match &target.cert {
        Some(file) => Ok(file.clone()),
        None => card.default_cert(),
    };
    match file.and_then(|file| card.file(&file)) {
        Ok(der) => emit_encoded(callback, OSSL_OBJECT_CERT, None, &der),
        Err(e) if ctx.uri.object.is_none() && ctx.expect == 0 => {
            // The certificate was not asked for by name: its absence is no error.
            config::debug(format_args!("no certificate: {e}"));
            ctx.pending = Some(Vec::new());
            1
        }
        Err(e) => {
            error::raise_card(&e);
            0
        }
    }
}

unsafe extern "C" fn load_entry(
    ctx: *mut c_void,
    object_cb: Option<OSSL_CALLBACK>,
    object_cbarg: *mut c_void,
    _pw_cb: Option<OSSL_PASSPHRASE_CALLBACK>,
    _pw_cbarg: *mut c_void,
) -> c_int {
    // SAFETY: context and the callback pair of this call.
    unsafe {
        let callback = Callback::new(object_cb, object_cbarg);
        with_ctx(ctx, 0, |ctx: &mut Context| match callback {
            Some(callback) => load(ctx, callback),
            None => 0,
        })
    }
}

unsafe extern "C" fn eof(ctx: *mut c_void) -> c_int {
    // SAFETY: a context from open.
    unsafe {
        with_ctx(ctx, 1, |ctx: &mut Context| {
            ctx.pending.as_ref().is_some_and(|p| p.is_empty()).into()
        })
    }
}

unsafe extern "C" fn close(ctx: *mut c_void) -> c_int {
    // SAFETY: a context from open, closed once.
    unsafe { drop_ctx::<Context>(ctx) };
    1
}

pub const FUNCTIONS: &[OSSL_DISPATCH] = dispatch_table![
    store_open(open_entry),
    store_settable_ctx_params(settable_ctx_params),
    store_set_ctx_params(set_ctx_params),
    store_load(load_entry),
    store_eof(eof),
    store_close(close),
];
