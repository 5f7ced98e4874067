//! Reading and answering `OSSL_PARAM` arrays.
//!
//! Each function takes the caller's NULL-terminated array (or NULL) and a key; "set" functions
//! return true when the key is absent (nothing asked) or was answered, false when the caller's
//! buffer could not take the value.

use std::ffi::{c_int, c_void, CStr, CString};

use super::ffi::*;

/// # Safety
/// `params` is NULL or a valid NULL-terminated parameter array.
pub unsafe fn locate(params: *mut OSSL_PARAM, key: &CStr) -> Option<*mut OSSL_PARAM> {
    if params.is_null() {
        return None;
    }
    let p = openssl_sys::OSSL_PARAM_locate(params, key.as_ptr());
    (!p.is_null()).then_some(p)
}

/// # Safety
/// As [`locate`].
pub unsafe fn locate_const(params: *const OSSL_PARAM, key: &CStr) -> Option<*const OSSL_PARAM> {
    if params.is_null() {
        return None;
    }
    let p = openssl_sys::OSSL_PARAM_locate_const(params, key.as_ptr());
    (!p.is_null()).then_some(p)
}

/// # Safety
/// As [`locate`].
pub unsafe fn set_utf8(params: *mut OSSL_PARAM, key: &CStr, value: &str) -> bool {
    match locate(params, key) {
        None => true,
        Some(p) => {
            let Ok(value) = CString::new(value) else {
                return false;
            };
            OSSL_PARAM_set_utf8_string(p, value.as_ptr()) == 1
        }
    }
}

/// A string parameter answered with a static string (UTF-8 string or pointer parameters).
///
/// # Safety
/// As [`locate`].
pub unsafe fn set_static_utf8(params: *mut OSSL_PARAM, key: &CStr, value: &'static CStr) -> bool {
    match locate(params, key) {
        None => true,
        Some(p) if (*p).data_type == OSSL_PARAM_UTF8_PTR => {
            OSSL_PARAM_set_utf8_ptr(p, value.as_ptr()) == 1
        }
        Some(p) => OSSL_PARAM_set_utf8_string(p, value.as_ptr()) == 1,
    }
}

/// # Safety
/// As [`locate`].
pub unsafe fn set_int(params: *mut OSSL_PARAM, key: &CStr, value: c_int) -> bool {
    match locate(params, key) {
        None => true,
        Some(p) => OSSL_PARAM_set_int(p, value) == 1,
    }
}

/// # Safety
/// As [`locate`].
pub unsafe fn set_octets(params: *mut OSSL_PARAM, key: &CStr, value: &[u8]) -> bool {
    match locate(params, key) {
        None => true,
        Some(p) => {
            OSSL_PARAM_set_octet_string(p, value.as_ptr() as *const c_void, value.len()) == 1
        }
    }
}

/// A UTF-8 parameter (string or pointer) as a Rust string.
///
/// # Safety
/// As [`locate`].
pub unsafe fn get_utf8(params: *const OSSL_PARAM, key: &CStr) -> Option<String> {
    let p = locate_const(params, key)?;
    let mut value: *const std::ffi::c_char = std::ptr::null();
    if openssl_sys::OSSL_PARAM_get_utf8_string_ptr(p, &mut value) != 1 || value.is_null() {
        return None;
    }
    Some(CStr::from_ptr(value).to_string_lossy().into_owned())
}

/// An octet-string parameter, copied.
///
/// # Safety
/// As [`locate`].
pub unsafe fn get_octets(params: *const OSSL_PARAM, key: &CStr) -> Option<Vec<u8>> {
    let p = locate_const(params, key)?;
    let mut value: *const c_void = std::ptr::null();
    let mut len = 0usize;
    if openssl_sys::OSSL_PARAM_get_octet_string_ptr(p, &mut value, &mut len) != 1 || value.is_null()
    {
        return None;
    }
    Some(std::slice::from_raw_parts(value as *const u8, len).to_vec())
}

/// An integer parameter.
///
/// # Safety
/// As [`locate`].
pub unsafe fn get_int(params: *const OSSL_PARAM, key: &CStr) -> Option<c_int> {
    let p = locate_const(params, key)?;
    let mut value: c_int = 0;
    (OSSL_PARAM_get_int(p, &mut value) == 1).then_some(value)
}

/// A C string argument as a Rust string (None for NULL).
///
/// # Safety
/// `s` is NULL or NUL-terminated.
pub unsafe fn c_str(s: *const std::ffi::c_char) -> Option<String> {
    (!s.is_null()).then(|| CStr::from_ptr(s).to_string_lossy().into_owned())
}
