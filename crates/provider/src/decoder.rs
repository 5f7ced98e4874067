//! Decoders for key-reference files, in two steps as OpenSSL chains them:
//! PEM (`-----BEGIN IOTSAFE KEY REFERENCE-----`) -> DER with structure `iotsafe-keyref`,
//! then DER -> a card key, handed over by reference to keymgmt `load` (see
//! [`keymgmt::offer`]).
//!
//! Anything that is not ours is passed over "empty-handed" (return 1 without a result), so
//! that OpenSSL goes on with the next decoder or the next PEM object of the file: a file that
//! holds the certificate first and the key reference second loads as a key.

use std::ffi::{c_int, c_void};

use super::abi::context::{stateless_freectx, stateless_instance, stateless_newctx};
use super::abi::dispatch::*;
use super::abi::dispatch_table;
use super::abi::ffi::*;
use super::abi::guard_in;
use super::abi::io::CoreBio;
use super::abi::params::{Callback, Param};
use super::config;
use super::error::{self, Reason};
use super::instance::Instance;
use super::key::Key;
use super::keymgmt;
use super::uri::{self, KeyUri};

unsafe extern "C" fn does_selection(_provctx: *mut c_void, selection: c_int) -> c_int {
    (selection == 0 || selection & (SELECT_KEYPAIR | SELECT_ALL_PARAMETERS) != 0).into()
}

/// The body shared by both decoders: the instance, the input and the callback of the call,
/// or 0 when OpenSSL passed none of them.
///
/// # Safety
/// The decoder entry's arguments from OpenSSL.
unsafe fn decode_with(
    ctx: *mut c_void,
    cin: *mut OSSL_CORE_BIO,
    data_cb: Option<OSSL_CALLBACK>,
    data_cbarg: *mut c_void,
    decode: fn(Instance, &CoreBio, Callback) -> c_int,
) -> c_int {
    // SAFETY: our newctx made the provctx the decoder context.
    let instance = unsafe { stateless_instance(ctx) };
    guard_in(instance, 0, || {
        let Some(instance) = instance else { return 0 };
        // SAFETY: the core BIO and callback pair of this call, used only during it.
        let (bio, callback) = unsafe {
            (
                CoreBio::new(instance, cin),
                Callback::new(data_cb, data_cbarg),
            )
        };
        match (bio, callback) {
            (Some(bio), Some(callback)) => decode(instance, &bio, callback),
            _ => 0,
        }
    })
}

/// Largest PEM object and line read (a key reference with long labels fits easily).
const MAX_PEM: usize = 64 * 1024;
const MAX_LINE: usize = 1024;

/// Reads one PEM object; when it is a key reference, resolves it (configuration, URI, card
/// key) before passing its DER on. This is the first step of the file store's decoder chain:
/// an error raised here reaches the caller (`openssl pkey -in FILE`), while the errors of the
/// key-reference step that the store runs inside its own attempt are dropped. So a damaged
/// reference (our label, a broken body) and every card failure are reported here.
fn decode_pem(instance: Instance, bio: &CoreBio, callback: Callback) -> c_int {
    let Some(block) = uri::next_pem_block(|| bio.read_line(MAX_LINE), MAX_PEM) else {
        return 1;
    };
    if block.label != uri::PEM_LABEL {
        return 1; // not ours
    }
    let resolved = uri::uri_of_keyref_pem(&block)
        .map_err(|e| (Reason::BadKeyReference, e))
        .and_then(|text| key_of_reference(instance, &text).map(|_| text));
    match resolved {
        Ok(text) => callback.call(&[
            Param::Int(c"type", OSSL_OBJECT_PKEY),
            Param::Utf8(c"data-type", c"EC"),
            Param::Utf8(c"data-structure", c"iotsafe-keyref"),
            Param::Octets(c"data", &uri::keyref_der(&text)),
        ]),
        Err((reason, message)) => {
            error::raise(reason, &message);
            0
        }
    }
}

/// The card key a key reference's URI names, read through this instance's settings.
fn key_of_reference(instance: Instance, text: &str) -> Result<Key, (Reason, String)> {
    let bad_reference = |e: String| (Reason::BadKeyReference, e);
    let parsed = KeyUri::parse(text).map_err(bad_reference)?;
    let configured = instance.checked_settings()?;
    let target = parsed.settings_over(&configured).map_err(bad_reference)?;
    Key::from_card(instance, &target)
        .map_err(|(reason, message)| (reason, format!("{message} (key reference {text})")))
}

/// Largest key reference read (a URI with long labels fits easily).
const MAX_REFERENCE: usize = 16 * 1024;

/// Turns a key reference's DER into the card key it names.
fn decode_keyref(instance: Instance, bio: &CoreBio, callback: Callback) -> c_int {
    let der = bio.read_all(MAX_REFERENCE);
    let Some(text) = uri::uri_of_keyref(&der) else {
        return 1; // not a key reference: not ours
    };
    match key_of_reference(instance, &text) {
        Ok(key) => {
            config::debug(format_args!("decoder: key reference {text} decoded"));
            keymgmt::offer(key, callback)
        }
        Err((reason, message)) => {
            error::raise(reason, &message);
            0
        }
    }
}

macro_rules! decoder_entry {
    ($name:ident, $decode:path) => {
        unsafe extern "C" fn $name(
            ctx: *mut c_void,
            cin: *mut OSSL_CORE_BIO,
            _selection: c_int,
            data_cb: Option<OSSL_CALLBACK>,
            data_cbarg: *mut c_void,
            _pw_cb: Option<OSSL_PASSPHRASE_CALLBACK>,
            _pw_cbarg: *mut c_void,
        ) -> c_int {
            // SAFETY: the arguments of this call, passed on.
            unsafe { decode_with(ctx, cin, data_cb, data_cbarg, $decode) }
        }
    };
}

decoder_entry!(decode_pem_entry, decode_pem);
decoder_entry!(decode_keyref_entry, decode_keyref);

pub const PEM_FUNCTIONS: &[OSSL_DISPATCH] = dispatch_table![
    decoder_newctx(stateless_newctx),
    decoder_freectx(stateless_freectx),
    decoder_does_selection(does_selection),
    decoder_decode(decode_pem_entry),
];

pub const KEYREF_FUNCTIONS: &[OSSL_DISPATCH] = dispatch_table![
    decoder_newctx(stateless_newctx),
    decoder_freectx(stateless_freectx),
    decoder_does_selection(does_selection),
    decoder_decode(decode_keyref_entry),
];
