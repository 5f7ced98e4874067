//! Dispatch entries by function: one constructor per function id, taking the function with
//! the signature OpenSSL's `core_dispatch.h` gives that id. The function pointer is stored
//! as OpenSSL's generic `void (*)(void)` only here, so a function of the wrong signature for
//! an id is a type error instead of a crash.

use std::ffi::{c_char, c_int, c_uchar, c_void};

use super::ffi::*;

/// The terminator of a dispatch table.
pub const END: OSSL_DISPATCH = OSSL_DISPATCH {
    function_id: 0,
    function: None,
};

/// The terminator of an algorithm table.
pub const ALGORITHM_END: OSSL_ALGORITHM = OSSL_ALGORITHM {
    algorithm_names: std::ptr::null(),
    property_definition: std::ptr::null(),
    implementation: std::ptr::null(),
    algorithm_description: std::ptr::null(),
};

/// An algorithm: NUL-terminated names, properties and description, and its dispatch table
/// (from [`dispatch_table!`](super::dispatch_table), hence terminated).
pub const fn algorithm(
    names: &'static [u8],
    properties: &'static [u8],
    implementation: &'static [OSSL_DISPATCH],
    description: &'static [u8],
) -> OSSL_ALGORITHM {
    OSSL_ALGORITHM {
        algorithm_names: names.as_ptr() as *const c_char,
        property_definition: properties.as_ptr() as *const c_char,
        implementation: implementation.as_ptr(),
        algorithm_description: description.as_ptr() as *const c_char,
    }
}

/// Declares one constructor per function id: `name = ID: fn(arguments) -> result;`.
macro_rules! entries {
    ($($name:ident = $id:ident : fn($($arg:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        $(
            #[doc = concat!("The entry `", stringify!($id), "`.")]
            pub const fn $name(function: unsafe extern "C" fn($($arg),*) $(-> $ret)?) -> OSSL_DISPATCH {
                OSSL_DISPATCH {
                    function_id: $id,
                    // SAFETY: a function pointer stored as the generic function pointer type
                    // of the ABI; OpenSSL casts it back to the signature `$id` prescribes,
                    // which is the type of `function`.
                    function: Some(unsafe {
                        std::mem::transmute::<
                            unsafe extern "C" fn($($arg),*) $(-> $ret)?,
                            unsafe extern "C" fn(),
                        >(function)
                    }),
                }
            }
        )*
    };
}

type Ctx = *mut c_void;
type Params = *const OSSL_PARAM;
type ParamsOut = *mut OSSL_PARAM;
type Callback = Option<OSSL_CALLBACK>;
type PassphraseCallback = Option<OSSL_PASSPHRASE_CALLBACK>;

entries! {
    provider_teardown = OSSL_FUNC_PROVIDER_TEARDOWN: fn(Ctx);
    provider_gettable_params = OSSL_FUNC_PROVIDER_GETTABLE_PARAMS: fn(Ctx) -> Params;
    provider_get_params = OSSL_FUNC_PROVIDER_GET_PARAMS: fn(Ctx, ParamsOut) -> c_int;
    provider_query_operation = OSSL_FUNC_PROVIDER_QUERY_OPERATION:
        fn(Ctx, c_int, *mut c_int) -> *const OSSL_ALGORITHM;
    provider_get_reason_strings = OSSL_FUNC_PROVIDER_GET_REASON_STRINGS:
        fn(Ctx) -> *const OSSL_ITEM;

    keymgmt_new = OSSL_FUNC_KEYMGMT_NEW: fn(Ctx) -> *mut c_void;
    keymgmt_free = OSSL_FUNC_KEYMGMT_FREE: fn(*mut c_void);
    keymgmt_load = OSSL_FUNC_KEYMGMT_LOAD: fn(*const c_void, usize) -> *mut c_void;
    keymgmt_has = OSSL_FUNC_KEYMGMT_HAS: fn(*const c_void, c_int) -> c_int;
    keymgmt_get_params = OSSL_FUNC_KEYMGMT_GET_PARAMS: fn(*mut c_void, ParamsOut) -> c_int;
    keymgmt_gettable_params = OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS: fn(Ctx) -> Params;
    keymgmt_match = OSSL_FUNC_KEYMGMT_MATCH: fn(*const c_void, *const c_void, c_int) -> c_int;
    keymgmt_import = OSSL_FUNC_KEYMGMT_IMPORT: fn(*mut c_void, c_int, Params) -> c_int;
    keymgmt_import_types = OSSL_FUNC_KEYMGMT_IMPORT_TYPES: fn(c_int) -> Params;
    keymgmt_export = OSSL_FUNC_KEYMGMT_EXPORT:
        fn(*mut c_void, c_int, Callback, *mut c_void) -> c_int;
    keymgmt_export_types = OSSL_FUNC_KEYMGMT_EXPORT_TYPES: fn(c_int) -> Params;
    keymgmt_query_operation_name = OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME:
        fn(c_int) -> *const c_char;

    signature_newctx = OSSL_FUNC_SIGNATURE_NEWCTX: fn(Ctx, *const c_char) -> *mut c_void;
    signature_freectx = OSSL_FUNC_SIGNATURE_FREECTX: fn(Ctx);
    signature_dupctx = OSSL_FUNC_SIGNATURE_DUPCTX: fn(Ctx) -> *mut c_void;
    signature_sign_init = OSSL_FUNC_SIGNATURE_SIGN_INIT: fn(Ctx, *mut c_void, Params) -> c_int;
    signature_sign = OSSL_FUNC_SIGNATURE_SIGN:
        fn(Ctx, *mut c_uchar, *mut usize, usize, *const c_uchar, usize) -> c_int;
    signature_digest_sign_init = OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT:
        fn(Ctx, *const c_char, *mut c_void, Params) -> c_int;
    signature_digest_sign_update = OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE:
        fn(Ctx, *const c_uchar, usize) -> c_int;
    signature_digest_sign_final = OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL:
        fn(Ctx, *mut c_uchar, *mut usize, usize) -> c_int;
    signature_digest_sign = OSSL_FUNC_SIGNATURE_DIGEST_SIGN:
        fn(Ctx, *mut c_uchar, *mut usize, usize, *const c_uchar, usize) -> c_int;
    signature_get_ctx_params = OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS: fn(Ctx, ParamsOut) -> c_int;
    signature_gettable_ctx_params = OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS:
        fn(Ctx, Ctx) -> Params;
    signature_set_ctx_params = OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS: fn(Ctx, Params) -> c_int;
    signature_settable_ctx_params = OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS:
        fn(Ctx, Ctx) -> Params;

    keyexch_newctx = OSSL_FUNC_KEYEXCH_NEWCTX: fn(Ctx) -> *mut c_void;
    keyexch_init = OSSL_FUNC_KEYEXCH_INIT: fn(Ctx, *mut c_void, Params) -> c_int;
    keyexch_derive = OSSL_FUNC_KEYEXCH_DERIVE: fn(Ctx, *mut c_uchar, *mut usize, usize) -> c_int;
    keyexch_set_peer = OSSL_FUNC_KEYEXCH_SET_PEER: fn(Ctx, *mut c_void) -> c_int;
    keyexch_freectx = OSSL_FUNC_KEYEXCH_FREECTX: fn(Ctx);
    keyexch_dupctx = OSSL_FUNC_KEYEXCH_DUPCTX: fn(Ctx) -> *mut c_void;

    store_open = OSSL_FUNC_STORE_OPEN: fn(Ctx, *const c_char) -> *mut c_void;
    store_settable_ctx_params = OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS: fn(Ctx) -> Params;
    store_set_ctx_params = OSSL_FUNC_STORE_SET_CTX_PARAMS: fn(Ctx, Params) -> c_int;
    store_load = OSSL_FUNC_STORE_LOAD:
        fn(Ctx, Callback, *mut c_void, PassphraseCallback, *mut c_void) -> c_int;
    store_eof = OSSL_FUNC_STORE_EOF: fn(Ctx) -> c_int;
    store_close = OSSL_FUNC_STORE_CLOSE: fn(Ctx) -> c_int;

    decoder_newctx = OSSL_FUNC_DECODER_NEWCTX: fn(Ctx) -> *mut c_void;
    decoder_freectx = OSSL_FUNC_DECODER_FREECTX: fn(Ctx);
    decoder_does_selection = OSSL_FUNC_DECODER_DOES_SELECTION: fn(Ctx, c_int) -> c_int;
    decoder_decode = OSSL_FUNC_DECODER_DECODE: fn(
        Ctx, *mut OSSL_CORE_BIO, c_int, Callback, *mut c_void, PassphraseCallback, *mut c_void,
    ) -> c_int;

    encoder_newctx = OSSL_FUNC_ENCODER_NEWCTX: fn(Ctx) -> *mut c_void;
    encoder_freectx = OSSL_FUNC_ENCODER_FREECTX: fn(Ctx);
    encoder_does_selection = OSSL_FUNC_ENCODER_DOES_SELECTION: fn(Ctx, c_int) -> c_int;
    encoder_encode = OSSL_FUNC_ENCODER_ENCODE: fn(
        Ctx, *mut OSSL_CORE_BIO, *const c_void, Params, c_int, PassphraseCallback, *mut c_void,
    ) -> c_int;
}

/// The entries of a terminated table OpenSSL would walk, up to (not including) the
/// terminator; `None` when `table` has no terminator within its length or a terminator
/// before its end.
#[cfg(test)]
pub fn entries_of(table: &[OSSL_DISPATCH]) -> Option<&[OSSL_DISPATCH]> {
    let (last, entries) = table.split_last()?;
    let terminated = last.function_id == 0 && last.function.is_none();
    let inner_ok = entries
        .iter()
        .all(|e| e.function_id != 0 && e.function.is_some());
    (terminated && inner_ok).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn free_stub(_keydata: *mut c_void) {}

    #[test]
    fn a_table_ends_with_exactly_one_terminator() {
        let table: &[OSSL_DISPATCH] = super::super::dispatch_table![keymgmt_free(free_stub)];
        assert_eq!(table.len(), 2);
        let entries = entries_of(table).expect("terminated");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].function_id, OSSL_FUNC_KEYMGMT_FREE);
        // A table with a doubled or missing terminator is told apart.
        assert!(entries_of(&[keymgmt_free(free_stub), END, END]).is_none());
        assert!(entries_of(&[keymgmt_free(free_stub)]).is_none());
    }
}
