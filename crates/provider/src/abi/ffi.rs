//! The few pieces of OpenSSL's provider ABI (core.h, core_dispatch.h, core_names.h) that
//! openssl-sys does not declare, and the libcrypto functions the provider calls directly.
#![allow(non_camel_case_types, dead_code)]

use std::ffi::{c_char, c_int, c_uint, c_void};

pub use openssl_sys::{BIO, OSSL_LIB_CTX, OSSL_PARAM};

/// `OSSL_CORE_HANDLE`: opaque, the provider's identity towards the core.
#[repr(C)]
pub struct OSSL_CORE_HANDLE {
    _opaque: [u8; 0],
}

/// `OSSL_CORE_BIO`: opaque, a BIO of the application handed through the core.
#[repr(C)]
pub struct OSSL_CORE_BIO {
    _opaque: [u8; 0],
}

/// `OSSL_DISPATCH`: one function of a table, by number.
#[repr(C)]
pub struct OSSL_DISPATCH {
    pub function_id: c_int,
    pub function: Option<unsafe extern "C" fn()>,
}

// SAFETY: the tables are immutable statics of function pointers.
unsafe impl Sync for OSSL_DISPATCH {}

/// `OSSL_ALGORITHM`: names, properties, the implementation's table, a description.
#[repr(C)]
pub struct OSSL_ALGORITHM {
    pub algorithm_names: *const c_char,
    pub property_definition: *const c_char,
    pub implementation: *const OSSL_DISPATCH,
    pub algorithm_description: *const c_char,
}

// SAFETY: the tables point at static NUL-terminated strings and static dispatch tables.
unsafe impl Sync for OSSL_ALGORITHM {}

/// `OSSL_ITEM`: reason strings.
#[repr(C)]
pub struct OSSL_ITEM {
    pub id: c_uint,
    pub ptr: *const c_char,
}

// SAFETY: static strings only.
unsafe impl Sync for OSSL_ITEM {}

/// An `OSSL_PARAM` that may live in a `static` (descriptor tables: no data pointers).
#[repr(transparent)]
pub struct ParamDescriptor(pub OSSL_PARAM);
// SAFETY: the descriptors point at static key strings and carry no data.
unsafe impl Sync for ParamDescriptor {}

pub const OSSL_PARAM_INTEGER: c_uint = 1;
pub const OSSL_PARAM_UNSIGNED_INTEGER: c_uint = 2;
pub const OSSL_PARAM_UTF8_STRING: c_uint = 4;
pub const OSSL_PARAM_OCTET_STRING: c_uint = 5;
pub const OSSL_PARAM_UTF8_PTR: c_uint = 6;
pub const OSSL_PARAM_UNMODIFIED: usize = usize::MAX;

/// A descriptor entry of a gettable/settable table.
pub const fn param(key: &'static [u8], data_type: c_uint) -> ParamDescriptor {
    ParamDescriptor(OSSL_PARAM {
        key: key.as_ptr() as *const c_char,
        data_type,
        data: std::ptr::null_mut(),
        data_size: 0,
        return_size: OSSL_PARAM_UNMODIFIED,
    })
}

pub const PARAM_END: ParamDescriptor = ParamDescriptor(OSSL_PARAM {
    key: std::ptr::null(),
    data_type: 0,
    data: std::ptr::null_mut(),
    data_size: 0,
    return_size: 0,
});

// Operation numbers.
pub const OSSL_OP_KEYMGMT: c_int = 10;
pub const OSSL_OP_KEYEXCH: c_int = 11;
pub const OSSL_OP_SIGNATURE: c_int = 12;
pub const OSSL_OP_ENCODER: c_int = 20;
pub const OSSL_OP_DECODER: c_int = 21;
pub const OSSL_OP_STORE: c_int = 22;

// Core functions offered to the provider.
pub const OSSL_FUNC_CORE_GET_PARAMS: c_int = 2;
pub const OSSL_FUNC_CORE_NEW_ERROR: c_int = 5;
pub const OSSL_FUNC_CORE_SET_ERROR_DEBUG: c_int = 6;
pub const OSSL_FUNC_CORE_VSET_ERROR: c_int = 7;

// Provider functions.
pub const OSSL_FUNC_PROVIDER_TEARDOWN: c_int = 1024;
pub const OSSL_FUNC_PROVIDER_GETTABLE_PARAMS: c_int = 1025;
pub const OSSL_FUNC_PROVIDER_GET_PARAMS: c_int = 1026;
pub const OSSL_FUNC_PROVIDER_QUERY_OPERATION: c_int = 1027;
pub const OSSL_FUNC_PROVIDER_GET_REASON_STRINGS: c_int = 1029;

// Key management.
pub const OSSL_FUNC_KEYMGMT_NEW: c_int = 1;
pub const OSSL_FUNC_KEYMGMT_LOAD: c_int = 8;
pub const OSSL_FUNC_KEYMGMT_FREE: c_int = 10;
pub const OSSL_FUNC_KEYMGMT_GET_PARAMS: c_int = 11;
pub const OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS: c_int = 12;
pub const OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME: c_int = 20;
pub const OSSL_FUNC_KEYMGMT_HAS: c_int = 21;
pub const OSSL_FUNC_KEYMGMT_MATCH: c_int = 23;
pub const OSSL_FUNC_KEYMGMT_IMPORT: c_int = 40;
pub const OSSL_FUNC_KEYMGMT_IMPORT_TYPES: c_int = 41;
pub const OSSL_FUNC_KEYMGMT_EXPORT: c_int = 42;
pub const OSSL_FUNC_KEYMGMT_EXPORT_TYPES: c_int = 43;

// Signature.
pub const OSSL_FUNC_SIGNATURE_NEWCTX: c_int = 1;
pub const OSSL_FUNC_SIGNATURE_SIGN_INIT: c_int = 2;
pub const OSSL_FUNC_SIGNATURE_SIGN: c_int = 3;
pub const OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT: c_int = 8;
pub const OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE: c_int = 9;
pub const OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL: c_int = 10;
pub const OSSL_FUNC_SIGNATURE_DIGEST_SIGN: c_int = 11;
pub const OSSL_FUNC_SIGNATURE_FREECTX: c_int = 16;
pub const OSSL_FUNC_SIGNATURE_DUPCTX: c_int = 17;
pub const OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS: c_int = 18;
pub const OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS: c_int = 19;
pub const OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS: c_int = 20;
pub const OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS: c_int = 21;

// Key exchange.
pub const OSSL_FUNC_KEYEXCH_NEWCTX: c_int = 1;
pub const OSSL_FUNC_KEYEXCH_INIT: c_int = 2;
pub const OSSL_FUNC_KEYEXCH_DERIVE: c_int = 3;
pub const OSSL_FUNC_KEYEXCH_SET_PEER: c_int = 4;
pub const OSSL_FUNC_KEYEXCH_FREECTX: c_int = 5;
pub const OSSL_FUNC_KEYEXCH_DUPCTX: c_int = 6;

// Store.
pub const OSSL_FUNC_STORE_OPEN: c_int = 1;
pub const OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS: c_int = 3;
pub const OSSL_FUNC_STORE_SET_CTX_PARAMS: c_int = 4;
pub const OSSL_FUNC_STORE_LOAD: c_int = 5;
pub const OSSL_FUNC_STORE_EOF: c_int = 6;
pub const OSSL_FUNC_STORE_CLOSE: c_int = 7;

// Decoder and encoder.
pub const OSSL_FUNC_DECODER_NEWCTX: c_int = 1;
pub const OSSL_FUNC_DECODER_FREECTX: c_int = 2;
pub const OSSL_FUNC_DECODER_DOES_SELECTION: c_int = 10;
pub const OSSL_FUNC_DECODER_DECODE: c_int = 11;
pub const OSSL_FUNC_DECODER_EXPORT_OBJECT: c_int = 20;
pub const OSSL_FUNC_ENCODER_NEWCTX: c_int = 1;
pub const OSSL_FUNC_ENCODER_FREECTX: c_int = 2;
pub const OSSL_FUNC_ENCODER_DOES_SELECTION: c_int = 10;
pub const OSSL_FUNC_ENCODER_ENCODE: c_int = 11;
pub const OSSL_FUNC_ENCODER_IMPORT_OBJECT: c_int = 20;
pub const OSSL_FUNC_ENCODER_FREE_OBJECT: c_int = 21;

// Key selections.
pub const SELECT_PRIVATE_KEY: c_int = 0x01;
pub const SELECT_PUBLIC_KEY: c_int = 0x02;
pub const SELECT_DOMAIN_PARAMETERS: c_int = 0x04;
pub const SELECT_OTHER_PARAMETERS: c_int = 0x80;
pub const SELECT_KEYPAIR: c_int = SELECT_PRIVATE_KEY | SELECT_PUBLIC_KEY;
pub const SELECT_ALL_PARAMETERS: c_int = SELECT_DOMAIN_PARAMETERS | SELECT_OTHER_PARAMETERS;

// Object types of OSSL_OBJECT_PARAM_TYPE (core_object.h).
pub const OSSL_OBJECT_PKEY: c_int = 2;
pub const OSSL_OBJECT_CERT: c_int = 3;

// The store's expected-type values (OSSL_STORE_INFO_*).
pub const STORE_INFO_PUBKEY: c_int = 3;
pub const STORE_INFO_PKEY: c_int = 4;
pub const STORE_INFO_CERT: c_int = 5;

/// Callbacks the core hands to operations.
pub type OSSL_CALLBACK = unsafe extern "C" fn(params: *const OSSL_PARAM, arg: *mut c_void) -> c_int;
pub type OSSL_PASSPHRASE_CALLBACK = unsafe extern "C" fn(
    pass: *mut c_char,
    pass_size: usize,
    pass_len: *mut usize,
    params: *const OSSL_PARAM,
    arg: *mut c_void,
) -> c_int;

// Core function types.
pub type CoreGetParamsFn =
    unsafe extern "C" fn(handle: *const OSSL_CORE_HANDLE, params: *mut OSSL_PARAM) -> c_int;
pub type CoreNewErrorFn = unsafe extern "C" fn(handle: *const OSSL_CORE_HANDLE);
pub type CoreSetErrorDebugFn = unsafe extern "C" fn(
    handle: *const OSSL_CORE_HANDLE,
    file: *const c_char,
    line: c_int,
    func: *const c_char,
);
/// `core_vset_error(handle, reason, fmt, va_list)`. The provider always passes a NULL format,
/// so the `va_list` is never read; it is declared as a pointer (how both x86-64 and AArch64
/// pass a `va_list` argument) and given a zeroed buffer.
pub type CoreVsetErrorFn = unsafe extern "C" fn(
    handle: *const OSSL_CORE_HANDLE,
    reason: u32,
    fmt: *const c_char,
    args: *mut c_void,
);

extern "C" {
    pub fn OSSL_LIB_CTX_new_from_dispatch(
        handle: *const OSSL_CORE_HANDLE,
        input: *const OSSL_DISPATCH,
    ) -> *mut OSSL_LIB_CTX;
    pub fn OSSL_LIB_CTX_free(ctx: *mut OSSL_LIB_CTX);
    pub fn BIO_new_from_core_bio(
        libctx: *mut OSSL_LIB_CTX,
        corebio: *mut OSSL_CORE_BIO,
    ) -> *mut BIO;
    pub fn ERR_add_error_data(num: c_int, ...);
    pub fn ERR_set_mark() -> c_int;
    pub fn ERR_pop_to_mark() -> c_int;
    pub fn OSSL_PARAM_construct_utf8_string(
        key: *const c_char,
        buf: *mut c_char,
        bsize: usize,
    ) -> OSSL_PARAM;
    pub fn OSSL_PARAM_construct_int(key: *const c_char, buf: *mut c_int) -> OSSL_PARAM;
    pub fn OSSL_PARAM_construct_utf8_ptr(
        key: *const c_char,
        buf: *mut *mut c_char,
        bsize: usize,
    ) -> OSSL_PARAM;
    pub fn OSSL_PARAM_set_int(p: *mut OSSL_PARAM, val: c_int) -> c_int;
    pub fn OSSL_PARAM_set_utf8_ptr(p: *mut OSSL_PARAM, val: *const c_char) -> c_int;
    pub fn OSSL_PARAM_set_size_t(p: *mut OSSL_PARAM, val: usize) -> c_int;
    pub fn OSSL_PARAM_set_utf8_string(p: *mut OSSL_PARAM, val: *const c_char) -> c_int;
    pub fn OSSL_PARAM_set_octet_string(p: *mut OSSL_PARAM, val: *const c_void, len: usize)
        -> c_int;
    pub fn OSSL_PARAM_get_int(p: *const OSSL_PARAM, val: *mut c_int) -> c_int;
    pub fn OSSL_PARAM_get_size_t(p: *const OSSL_PARAM, val: *mut usize) -> c_int;
    pub fn BIO_read(b: *mut BIO, data: *mut c_void, dlen: c_int) -> c_int;
    pub fn BIO_gets(b: *mut BIO, buf: *mut c_char, size: c_int) -> c_int;
    pub fn BIO_write(b: *mut BIO, data: *const c_void, dlen: c_int) -> c_int;
    pub fn BIO_free(b: *mut BIO) -> c_int;
}

extern "C" {
    pub fn CRYPTO_free(ptr: *mut c_void, file: *const c_char, line: c_int);
    pub fn EVP_PKEY_print_public(
        out: *mut BIO,
        pkey: *const openssl_sys::EVP_PKEY,
        indent: c_int,
        pctx: *mut c_void,
    ) -> c_int;
}
