//! Calling the C API from Rust tests: C strings in, the thread's last error out.
#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::net::SocketAddr;
use std::path::Path;

use iotsafe_dane::capi::{iotsafe_dane_last_error, iotsafe_dane_new, IotsafeDane};

/// `s` as a C string (test input has no NUL byte).
pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// The calling thread's last error message from the C API.
pub fn last_error() -> String {
    unsafe { CStr::from_ptr(iotsafe_dane_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A handle on the resolver at `resolver` trusting the anchor in `trust_anchor`; the test
/// fails, with the library's error, if there is none. The caller frees it.
pub fn new_handle(resolver: SocketAddr, trust_anchor: &Path) -> *mut IotsafeDane {
    let resolver = c(&resolver.to_string());
    let anchor = c(trust_anchor.to_str().unwrap());
    // SAFETY: both arguments are NUL-terminated strings that outlive the call.
    let handle = unsafe { iotsafe_dane_new(resolver.as_ptr(), anchor.as_ptr()) };
    assert!(!handle.is_null(), "{}", last_error());
    handle
}
