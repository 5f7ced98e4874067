//! Encoders for the public half of a card key: SubjectPublicKeyInfo (DER, PEM) and text.
//! (The private half has no encoding: use `iotsafe keyref` for a key-reference file.)

use std::ffi::{c_int, c_void};

use super::abi::context::{self, stateless_freectx, stateless_instance, stateless_newctx};
use super::abi::dispatch::*;
use super::abi::dispatch_table;
use super::abi::ffi::*;
use super::abi::guard_in;
use super::abi::io::CoreBio;
use super::error::{self, Reason};
use super::key::Key;

#[derive(Clone, Copy)]
enum Format {
    Der,
    Pem,
    Text,
}

unsafe extern "C" fn does_selection(_provctx: *mut c_void, selection: c_int) -> c_int {
    (selection & SELECT_PRIVATE_KEY == 0
        && selection & (SELECT_PUBLIC_KEY | SELECT_ALL_PARAMETERS) != 0)
        .into()
}

/// The text encoder also serves `openssl pkey -text` (the private key selected): it prints
/// the public key and where the private key is, which has no encoding.
unsafe extern "C" fn does_text_selection(_provctx: *mut c_void, selection: c_int) -> c_int {
    (selection == 0 || selection & (SELECT_KEYPAIR | SELECT_ALL_PARAMETERS) != 0).into()
}

/// The text line that says where the private half of `key` is.
fn private_key_origin(key: &Key) -> String {
    let Some(private) = &key.private else {
        return String::new();
    };
    let reader = key
        .card
        .as_ref()
        .and_then(|card| card.reader())
        .map(|reader| format!(", reader '{reader}'"))
        .unwrap_or_default();
    format!(
        "Private key: on the IoT SAFE applet (private key {private}{reader}); it never leaves \
         the card and has no encoding\n"
    )
}

fn encode(format: Format, bio: Option<CoreBio>, key: Option<&Key>) -> bool {
    let Some(key) = key else {
        error::raise(
            Reason::Unsupported,
            "only keys of this provider can be encoded by it",
        );
        return false;
    };
    let Some(public) = key.public_pkey() else {
        error::raise(Reason::Internal, "the key has no valid public point");
        return false;
    };
    let Some(bio) = bio else {
        return false;
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
            bio.print_public(&public) && bio.write_all(private_key_origin(key).as_bytes())
        }
    };
    if !ok {
        error::raise(Reason::Internal, "cannot write the encoded public key");
    }
    ok
}

/// The encoder entry's arguments made safe, then [`encode`].
///
/// # Safety
/// The encoder entry's arguments from OpenSSL (`keydata` of our keymgmt, which OpenSSL
/// guarantees by fetching the encoder for it).
unsafe fn encode_with(
    format: Format,
    ctx: *mut c_void,
    cout: *mut OSSL_CORE_BIO,
    keydata: *const c_void,
) -> c_int {
    // SAFETY: our newctx made the provctx the encoder context.
    let instance = unsafe { stateless_instance(ctx) };
    guard_in(instance, 0, || {
        let Some(instance) = instance else { return 0 };
        // SAFETY: the core BIO and key data of this call, used only during it.
        let (bio, key) = unsafe {
            (
                CoreBio::new(instance, cout),
                context::borrow::<Key>(keydata),
            )
        };
        encode(format, bio, key).into()
    })
}

macro_rules! encoder_entry {
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
            // SAFETY: the arguments of this call, passed on.
            unsafe { encode_with($format, ctx, cout, obj_raw) }
        }
    };
}

encoder_entry!(encode_der, Format::Der);
encoder_entry!(encode_pem, Format::Pem);
encoder_entry!(encode_text, Format::Text);

macro_rules! table {
    ($encode:ident, $selection:ident) => {
        dispatch_table![
            encoder_newctx(stateless_newctx),
            encoder_freectx(stateless_freectx),
            encoder_does_selection($selection),
            encoder_encode($encode),
        ]
    };
}

pub const SPKI_DER_FUNCTIONS: &[OSSL_DISPATCH] = table!(encode_der, does_selection);
pub const SPKI_PEM_FUNCTIONS: &[OSSL_DISPATCH] = table!(encode_pem, does_selection);
pub const TEXT_FUNCTIONS: &[OSSL_DISPATCH] = table!(encode_text, does_text_selection);
