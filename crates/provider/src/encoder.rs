//! Encoders for the public half of a card key: SubjectPublicKeyInfo (DER, PEM) and text.
//! (The private half has no encoding: use `iotsafe keyref` for a key-reference file.)

use std::ffi::{c_int, c_void};

use foreign_types::ForeignType;

use super::error::{self, Reason};
use super::ffi::*;
use super::keymgmt;
use super::{dispatch, dispatch_end, guard_in, Instance};

#[derive(Clone, Copy)]
enum Format {
    Der,
    Pem,
    Text,
}

unsafe extern "C" fn newctx(provctx: *mut c_void) -> *mut c_void {
    // No state: the provider context serves as the encoder's (so each encode knows the
    // instance it runs in).
    provctx
}

unsafe extern "C" fn freectx(_ctx: *mut c_void) {}

unsafe extern "C" fn does_selection(_provctx: *mut c_void, selection: c_int) -> c_int {
    (selection & SELECT_PRIVATE_KEY == 0
        && selection & (SELECT_PUBLIC_KEY | SELECT_ALL_PARAMETERS) != 0)
        .into()
}

unsafe fn encode(
    instance: Instance,
    format: Format,
    cout: *mut OSSL_CORE_BIO,
    keydata: *const c_void,
) -> c_int {
    let Some(key) = keymgmt::borrow(keydata) else {
        error::raise(
            Reason::Unsupported,
            "only keys of this provider can be encoded by it",
        );
        return 0;
    };
    let Some(public) = key.public_pkey() else {
        error::raise(Reason::Internal, "the key has no valid public point");
        return 0;
    };
    let Some(bio) = CoreBio::new(instance, cout) else {
        return 0;
    };
    let ok = match format {
        Format::Der => public
            .public_key_to_der()
            .map(|d| bio.write_all(&d))
            .unwrap_or(false),
        Format::Pem => public
            .public_key_to_pem()
            .map(|d| bio.write_all(&d))
            .unwrap_or(false),
        Format::Text => {
            let printed =
                EVP_PKEY_print_public(bio.0, public.as_ptr(), 0, std::ptr::null_mut()) == 1;
            let origin = match &key.private {
                Some(private) => format!("IoT SAFE applet private key {private}\n"),
                None => String::new(),
            };
            printed && bio.write_all(origin.as_bytes())
        }
    };
    if !ok {
        error::raise(Reason::Internal, "cannot write the encoded public key");
    }
    ok.into()
}

macro_rules! encoder {
    ($name:ident, $format:expr) => {
        unsafe extern "C" fn $name(
            ctx: *mut c_void,
            cout: *mut OSSL_CORE_BIO,
            obj_raw: *const c_void,
            _obj_abstract: *const OSSL_PARAM,
            _selection: c_int,
            _cb: Option<OSSL_PASSPHRASE_CALLBACK>,
            _cbarg: *mut c_void,
        ) -> c_int {
            // SAFETY: our newctx made the provctx the encoder context.
            let instance = unsafe { Instance::from_provctx(ctx) };
            guard_in(instance, 0, || match instance {
                // SAFETY: the core BIO and key data of this call.
                Some(instance) => unsafe { encode(instance, $format, cout, obj_raw) },
                None => 0,
            })
        }
    };
}

encoder!(encode_der, Format::Der);
encoder!(encode_pem, Format::Pem);
encoder!(encode_text, Format::Text);

macro_rules! table {
    ($encode:ident) => {
        [
            dispatch!(OSSL_FUNC_ENCODER_NEWCTX, newctx),
            dispatch!(OSSL_FUNC_ENCODER_FREECTX, freectx),
            dispatch!(OSSL_FUNC_ENCODER_DOES_SELECTION, does_selection),
            dispatch!(OSSL_FUNC_ENCODER_ENCODE, $encode),
            dispatch_end!(),
        ]
    };
}

pub static SPKI_DER_FUNCTIONS: [OSSL_DISPATCH; 5] = table!(encode_der);
pub static SPKI_PEM_FUNCTIONS: [OSSL_DISPATCH; 5] = table!(encode_pem);
pub static TEXT_FUNCTIONS: [OSSL_DISPATCH; 5] = table!(encode_text);
