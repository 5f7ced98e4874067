//! Store for `iotsafe:` URIs (`openssl pkey -in iotsafe:key-id=01`, `OSSL_STORE_open`).
//!
//! The private key is handed over as key-reference DER, which OpenSSL decodes with this
//! provider's decoder (so that the key lands in this provider's key management); the public
//! key as SubjectPublicKeyInfo DER and the certificate as its DER.

use std::ffi::{c_char, c_int, c_void};

use super::card;
use super::error::{self, Reason};
use super::ffi::*;
use super::uri::{self, KeyUri, ObjectType};
use super::{dispatch, dispatch_end, guard_in, params, Instance};
use crate::keys;

struct Context {
    instance: Instance,
    uri: KeyUri,
    expect: c_int,
    pending: Option<Vec<ObjectType>>,
}

unsafe extern "C" fn open(provctx: *mut c_void, text: *const c_char) -> *mut c_void {
    // SAFETY: the provctx of this call.
    let instance = unsafe { Instance::from_provctx(provctx) };
    guard_in(instance, std::ptr::null_mut(), || {
        let Some(instance) = instance else {
            return std::ptr::null_mut();
        };
        // SAFETY: a NUL-terminated URI from OpenSSL.
        let Some(text) = (unsafe { params::c_str(text) }) else {
            return std::ptr::null_mut();
        };
        match KeyUri::parse(&text) {
            Ok(uri) => Box::into_raw(Box::new(Context {
                instance,
                uri,
                expect: 0,
                pending: None,
            })) as *mut c_void,
            Err(e) => {
                error::raise(Reason::BadUri, &e);
                std::ptr::null_mut()
            }
        }
    })
}

static SETTABLE: [ParamDescriptor; 2] = [param(b"expect\0", OSSL_PARAM_INTEGER), PARAM_END];

unsafe extern "C" fn settable_ctx_params(_provctx: *mut c_void) -> *const OSSL_PARAM {
    SETTABLE.as_ptr() as *const OSSL_PARAM
}

/// The instance a store context was opened through (its functions get no provctx).
///
/// # Safety
/// `ctx` is NULL or a context from `open`, not closed.
unsafe fn instance_of(ctx: *mut c_void) -> Option<Instance> {
    (ctx as *const Context).as_ref().map(|ctx| ctx.instance)
}

unsafe extern "C" fn set_ctx_params(ctx: *mut c_void, input: *const OSSL_PARAM) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: context and parameters from OpenSSL.
        unsafe {
            let Some(ctx) = (ctx as *mut Context).as_mut() else {
                return 0;
            };
            if let Some(expect) = params::get_int(input, c"expect") {
                ctx.expect = expect;
            }
            1
        }
    })
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

unsafe fn emit(
    object_type: c_int,
    structure: Option<&'static std::ffi::CStr>,
    data: &mut [u8],
    cb: OSSL_CALLBACK,
    cbarg: *mut c_void,
) -> c_int {
    let mut object_type = object_type;
    let mut params = vec![OSSL_PARAM_construct_int(c"type".as_ptr(), &mut object_type)];
    if let Some(structure) = structure {
        params.push(OSSL_PARAM_construct_utf8_string(
            c"data-type".as_ptr(),
            c"EC".as_ptr() as *mut c_char,
            0,
        ));
        params.push(OSSL_PARAM_construct_utf8_string(
            c"data-structure".as_ptr(),
            structure.as_ptr() as *mut c_char,
            0,
        ));
        params.push(OSSL_PARAM_construct_utf8_string(
            c"input-type".as_ptr(),
            c"DER".as_ptr() as *mut c_char,
            0,
        ));
    }
    params.push(openssl_sys::OSSL_PARAM_construct_octet_string(
        c"data".as_ptr(),
        data.as_mut_ptr() as *mut c_void,
        data.len(),
    ));
    params.push(openssl_sys::OSSL_PARAM_construct_end());
    cb(params.as_ptr(), cbarg)
}

unsafe extern "C" fn load(
    ctx: *mut c_void,
    object_cb: Option<OSSL_CALLBACK>,
    object_cbarg: *mut c_void,
    _pw_cb: Option<OSSL_PASSPHRASE_CALLBACK>,
    _pw_cbarg: *mut c_void,
) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        // SAFETY: context and callback from OpenSSL.
        unsafe {
            let (Some(ctx), Some(cb)) = ((ctx as *mut Context).as_mut(), object_cb) else {
                return 0;
            };
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
            let settings = match ctx.uri.settings_over(&configured) {
                Ok(settings) => settings,
                Err(e) => {
                    error::raise(Reason::BadUri, &e);
                    return 0;
                }
            };
            let card = card::card_for(&settings);
            match object {
                ObjectType::Private => {
                    // Check the key now, so that a wrong URI fails here with its reason
                    // (the public half read is cached: the decoder does no second read).
                    if let Err((reason, message)) =
                        super::keymgmt::Key::from_card(ctx.instance, &settings)
                    {
                        error::raise(reason, &format!("{message} (URI {})", ctx.uri));
                        return 0;
                    }
                    let reference = KeyUri {
                        target: ctx.uri.target.clone(),
                        object: None,
                    };
                    let mut der = uri::keyref_der(&reference.to_string());
                    emit(
                        OSSL_OBJECT_PKEY,
                        Some(c"iotsafe-keyref"),
                        &mut der,
                        cb,
                        object_cbarg,
                    )
                }
                ObjectType::Public => {
                    let result =
                        super::keymgmt::Key::from_card(ctx.instance, &settings).and_then(|key| {
                            keys::public_key_from_point(key.curve, &key.point)
                                .and_then(|k| k.public_key_to_der())
                                .map_err(|e| (Reason::Internal, e.to_string()))
                        });
                    match result {
                        Ok(mut der) => emit(
                            OSSL_OBJECT_PKEY,
                            Some(c"SubjectPublicKeyInfo"),
                            &mut der,
                            cb,
                            object_cbarg,
                        ),
                        Err((reason, message)) => {
                            error::raise(reason, &message);
                            0
                        }
                    }
                }
                ObjectType::Cert => {
                    let file = match &settings.cert {
                        Some(file) => Ok(file.clone()),
                        None => card.default_cert(),
                    };
                    match file.and_then(|file| card.file(&file)) {
                        Ok(mut der) => emit(OSSL_OBJECT_CERT, None, &mut der, cb, object_cbarg),
                        Err(e) if ctx.uri.object.is_none() && ctx.expect == 0 => {
                            // The certificate was not asked for by name: its absence is no error.
                            super::config::debug(format_args!("no certificate: {e}"));
                            ctx.pending = Some(Vec::new());
                            1
                        }
                        Err(e) => {
                            error::raise_card(&e);
                            0
                        }
                    }
                }
            }
        }
    })
}

unsafe extern "C" fn eof(ctx: *mut c_void) -> c_int {
    guard_in(instance_of(ctx), 1, || {
        // SAFETY: a context from open.
        match unsafe { (ctx as *mut Context).as_ref() } {
            Some(ctx) => ctx.pending.as_ref().is_some_and(|p| p.is_empty()).into(),
            None => 1,
        }
    })
}

unsafe extern "C" fn close(ctx: *mut c_void) -> c_int {
    guard_in(instance_of(ctx), 0, || {
        if !ctx.is_null() {
            // SAFETY: a context from open, closed once.
            drop(unsafe { Box::from_raw(ctx as *mut Context) });
        }
        1
    })
}

pub static FUNCTIONS: [OSSL_DISPATCH; 7] = [
    dispatch!(OSSL_FUNC_STORE_OPEN, open),
    dispatch!(OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, settable_ctx_params),
    dispatch!(OSSL_FUNC_STORE_SET_CTX_PARAMS, set_ctx_params),
    dispatch!(OSSL_FUNC_STORE_LOAD, load),
    dispatch!(OSSL_FUNC_STORE_EOF, eof),
    dispatch!(OSSL_FUNC_STORE_CLOSE, close),
    dispatch_end!(),
];
