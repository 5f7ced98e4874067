//! Decoders for key-reference files, in two steps as OpenSSL chains them:
//! PEM (`-----BEGIN IOTSAFE KEY REFERENCE-----`) -> DER with structure `iotsafe-keyref`,
//! then DER -> a card key, handed over as an object reference that keymgmt `load` takes.
//!
//! Anything that is not ours is passed over "empty-handed" (return 1 without a result), so
//! that OpenSSL goes on with the next decoder or the next PEM object of the file: a file that
//! holds the certificate first and the key reference second loads as a key.

use std::ffi::{c_char, c_int, c_long, c_void, CStr};

use super::error;
use super::ffi::*;
use super::keymgmt::{self, Key, Reference, REFERENCE_MAGIC};
use super::uri::{self, KeyUri};
use super::{dispatch, dispatch_end, guard_in, Instance};

unsafe extern "C" fn newctx(provctx: *mut c_void) -> *mut c_void {
    // The decoders keep no state: the provider context serves as theirs (so each decode
    // knows the instance it runs in).
    provctx
}

unsafe extern "C" fn freectx(_ctx: *mut c_void) {}

unsafe extern "C" fn does_selection(_provctx: *mut c_void, selection: c_int) -> c_int {
    (selection == 0 || selection & (SELECT_KEYPAIR | SELECT_ALL_PARAMETERS) != 0).into()
}

/// Reads one PEM object; passes its DER on when it is a key reference.
unsafe extern "C" fn decode_pem(
    ctx: *mut c_void,
    cin: *mut OSSL_CORE_BIO,
    _selection: c_int,
    data_cb: Option<OSSL_CALLBACK>,
    data_cbarg: *mut c_void,
    _pw_cb: Option<OSSL_PASSPHRASE_CALLBACK>,
    _pw_cbarg: *mut c_void,
) -> c_int {
    // SAFETY: our newctx made the provctx the decoder context.
    let instance = unsafe { Instance::from_provctx(ctx) };
    guard_in(instance, 0, || {
        let Some(instance) = instance else { return 0 };
        // SAFETY: the core BIO and callback of this call.
        unsafe {
            let (Some(bio), Some(data_cb)) = (CoreBio::new(instance, cin), data_cb) else {
                return 0;
            };
            let mut name: *mut c_char = std::ptr::null_mut();
            let mut header: *mut c_char = std::ptr::null_mut();
            let mut data: *mut u8 = std::ptr::null_mut();
            let mut len: c_long = 0;
            // Not PEM at all is no error of ours: leave the queue as it was.
            ERR_set_mark();
            let read = PEM_read_bio(bio.0, &mut name, &mut header, &mut data, &mut len) == 1;
            ERR_pop_to_mark();
            let mut ok = 1;
            if read
                && !name.is_null()
                && CStr::from_ptr(name).to_bytes() == uri::PEM_LABEL.as_bytes()
            {
                let mut object_type = OSSL_OBJECT_PKEY;
                let params = [
                    OSSL_PARAM_construct_int(c"type".as_ptr(), &mut object_type),
                    OSSL_PARAM_construct_utf8_string(
                        c"data-type".as_ptr(),
                        c"EC".as_ptr() as *mut c_char,
                        0,
                    ),
                    OSSL_PARAM_construct_utf8_string(
                        c"data-structure".as_ptr(),
                        c"iotsafe-keyref".as_ptr() as *mut c_char,
                        0,
                    ),
                    openssl_sys::OSSL_PARAM_construct_octet_string(
                        c"data".as_ptr(),
                        data as *mut c_void,
                        len as usize,
                    ),
                    openssl_sys::OSSL_PARAM_construct_end(),
                ];
                ok = data_cb(params.as_ptr(), data_cbarg);
            }
            for p in [
                name as *mut c_void,
                header as *mut c_void,
                data as *mut c_void,
            ] {
                if !p.is_null() {
                    CRYPTO_free(p, c"decoder.rs".as_ptr(), 0);
                }
            }
            ok
        }
    })
}

/// Largest key reference read (a URI with long labels fits easily).
const MAX_REFERENCE: usize = 16 * 1024;

/// Turns a key reference's DER into the card key it names.
unsafe extern "C" fn decode_keyref(
    ctx: *mut c_void,
    cin: *mut OSSL_CORE_BIO,
    _selection: c_int,
    data_cb: Option<OSSL_CALLBACK>,
    data_cbarg: *mut c_void,
    _pw_cb: Option<OSSL_PASSPHRASE_CALLBACK>,
    _pw_cbarg: *mut c_void,
) -> c_int {
    // SAFETY: our newctx made the provctx the decoder context.
    let instance = unsafe { Instance::from_provctx(ctx) };
    guard_in(instance, 0, || {
        let Some(instance) = instance else { return 0 };
        // SAFETY: the core BIO and callback of this call.
        unsafe {
            let (Some(bio), Some(data_cb)) = (CoreBio::new(instance, cin), data_cb) else {
                return 0;
            };
            let der = bio.read_all(MAX_REFERENCE);
            let Some(text) = uri::uri_of_keyref(&der) else {
                return 1; // not a key reference: not ours
            };
            let parsed = match KeyUri::parse(&text) {
                Ok(parsed) => parsed,
                Err(e) => {
                    error::raise(error::Reason::BadKeyReference, &e);
                    return 0;
                }
            };
            let Some(configured) = instance.settings() else {
                return 0;
            };
            let settings = match parsed.settings_over(&configured) {
                Ok(settings) => settings,
                Err(e) => {
                    error::raise(error::Reason::BadKeyReference, &e);
                    return 0;
                }
            };
            let key = match Key::from_card(instance, &settings) {
                Ok(key) => key,
                Err((reason, message)) => {
                    error::raise(reason, &format!("{message} (key reference {text})"));
                    return 0;
                }
            };
            hand_over(key, data_cb, data_cbarg)
        }
    })
}

/// Passes a key to OpenSSL as an object reference; frees it when nobody took it.
///
/// # Safety
/// `data_cb` and `data_cbarg` are a callback pair from OpenSSL.
pub unsafe fn hand_over(key: Key, data_cb: OSSL_CALLBACK, data_cbarg: *mut c_void) -> c_int {
    let mut reference = Reference {
        magic: REFERENCE_MAGIC,
        keydata: keymgmt::into_keydata(key),
    };
    let mut object_type = OSSL_OBJECT_PKEY;
    let params = [
        OSSL_PARAM_construct_int(c"type".as_ptr(), &mut object_type),
        OSSL_PARAM_construct_utf8_string(c"data-type".as_ptr(), c"EC".as_ptr() as *mut c_char, 0),
        openssl_sys::OSSL_PARAM_construct_octet_string(
            c"reference".as_ptr(),
            &mut reference as *mut Reference as *mut c_void,
            std::mem::size_of::<Reference>(),
        ),
        openssl_sys::OSSL_PARAM_construct_end(),
    ];
    let ok = data_cb(params.as_ptr(), data_cbarg);
    if !reference.keydata.is_null() {
        // Nobody loaded it.
        drop(std::sync::Arc::from_raw(reference.keydata as *const Key));
    }
    ok
}

pub static PEM_FUNCTIONS: [OSSL_DISPATCH; 5] = [
    dispatch!(OSSL_FUNC_DECODER_NEWCTX, newctx),
    dispatch!(OSSL_FUNC_DECODER_FREECTX, freectx),
    dispatch!(OSSL_FUNC_DECODER_DOES_SELECTION, does_selection),
    dispatch!(OSSL_FUNC_DECODER_DECODE, decode_pem),
    dispatch_end!(),
];

pub static KEYREF_FUNCTIONS: [OSSL_DISPATCH; 5] = [
    dispatch!(OSSL_FUNC_DECODER_NEWCTX, newctx),
    dispatch!(OSSL_FUNC_DECODER_FREECTX, freectx),
    dispatch!(OSSL_FUNC_DECODER_DOES_SELECTION, does_selection),
    dispatch!(OSSL_FUNC_DECODER_DECODE, decode_keyref),
    dispatch_end!(),
];
