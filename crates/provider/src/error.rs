//! Errors on OpenSSL's error queue, through the core's error functions, with reasons a user
//! understands and the details (reader, object, status word) as the error's data.

use std::cell::Cell;
use std::ffi::{c_int, CStr, CString};

use super::abi::core::raise_in_libcrypto;
use super::abi::ffi::OSSL_ITEM;
use super::instance::Instance;
use iotsafe_card as iotsafe;

/// The provider's reason codes (the text is in [`REASONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Reason {
    CardUnavailable = 1,
    NotFound = 2,
    BadUri = 3,
    CardError = 4,
    Unsupported = 5,
    Internal = 6,
    BadConfig = 7,
    NoPrivateKey = 8,
    BadKeyReference = 9,
    KeyMismatch = 10,
}

const REASONS: &[OSSL_ITEM] = &[
    item(
        Reason::CardUnavailable,
        b"cannot reach the IoT SAFE applet\0",
    ),
    item(
        Reason::NotFound,
        b"object not found on the IoT SAFE applet\0",
    ),
    item(Reason::BadUri, b"invalid iotsafe URI\0"),
    item(Reason::CardError, b"IoT SAFE applet operation failed\0"),
    item(
        Reason::Unsupported,
        b"not supported by the IoT SAFE provider\0",
    ),
    item(
        Reason::Internal,
        b"internal error in the IoT SAFE provider\0",
    ),
    item(
        Reason::BadConfig,
        b"invalid IoT SAFE provider configuration\0",
    ),
    item(
        Reason::NoPrivateKey,
        b"the key has no private half on the card\0",
    ),
    item(Reason::BadKeyReference, b"invalid IoT SAFE key reference\0"),
    item(
        Reason::KeyMismatch,
        b"certificate and key reference belong to different keys\0",
    ),
    OSSL_ITEM {
        id: 0,
        ptr: std::ptr::null(),
    },
];

const fn item(reason: Reason, text: &'static [u8]) -> OSSL_ITEM {
    OSSL_ITEM {
        id: reason as u32,
        ptr: text.as_ptr() as *const std::ffi::c_char,
    }
}

pub(super) unsafe extern "C" fn reason_strings(
    _provctx: *mut std::ffi::c_void,
) -> *const OSSL_ITEM {
    REASONS.as_ptr()
}

thread_local! {
    /// The provider instance whose call this thread is running (innermost first).
    static CALLER: Cell<Option<Instance>> = const { Cell::new(None) };
}

/// Runs `body` as a call through `instance`: errors raised in it go through that instance's
/// core handle. Without an instance (a function OpenSSL calls with neither a provctx nor one
/// of our objects) an enclosing call's instance stays in force.
pub(super) fn on_behalf_of<R>(instance: Option<Instance>, body: impl FnOnce() -> R) -> R {
    struct Restore(Option<Instance>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CALLER.with(|c| c.set(self.0));
        }
    }
    let outer = CALLER.with(|c| c.get());
    let _restore = Restore(outer);
    CALLER.with(|c| c.set(instance.or(outer)));
    body()
}

/// Puts an error with `reason` and the detail `message` on the calling thread's queue,
/// through the instance whose call is running. The error's file and line are those of the
/// caller.
#[track_caller]
pub fn raise(reason: Reason, message: &str) {
    let location = std::panic::Location::caller();
    super::config::debug(format_args!("error: {message}"));
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    let file = static_file_name(location.file());
    let line = c_int::try_from(location.line()).unwrap_or(0);
    match CALLER.with(|c| c.get()) {
        Some(instance) => raise_through(instance, reason, file, line, &message),
        None => raise_without_instance(file, line, &message),
    }
}

fn raise_through(instance: Instance, reason: Reason, file: &CStr, line: c_int, message: &CStr) {
    if !instance
        .provider()
        .core
        .raise(reason as u32, file, line, message)
    {
        raise_without_instance(file, line, message);
    }
}

/// No instance known (see [`on_behalf_of`]): the error goes straight to libcrypto.
fn raise_without_instance(file: &CStr, line: c_int, message: &CStr) {
    raise_in_libcrypto(file, line, message);
}

/// The reason that fits an error of the host stack.
pub fn reason_of(e: &iotsafe::Error) -> Reason {
    use iotsafe::Error as E;
    match e {
        E::NotFound { .. } => Reason::NotFound,
        E::NoReader(_)
        | E::NoModem(_)
        | E::CardAbsent { .. }
        | E::CardReset { .. }
        | E::Unresponsive { .. }
        | E::NoApplet(_)
        | E::Transport(_) => Reason::CardUnavailable,
        E::Invalid(_) => Reason::Unsupported,
        E::Refused { .. } | E::Malformed { .. } => Reason::CardError,
    }
}

/// Reports an error of the host stack with the fitting reason.
#[track_caller]
pub fn raise_card(e: &iotsafe::Error) {
    raise(reason_of(e), &e.to_string());
}

/// OpenSSL keeps the file name pointer of an error (it does not copy it): a NUL-terminated
/// copy of each source file name is made once and kept.
fn static_file_name(file: &'static str) -> &'static std::ffi::CStr {
    static NAMES: std::sync::Mutex<Vec<(&'static str, &'static std::ffi::CStr)>> =
        std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, name)) = names.iter().find(|(f, _)| *f == file) {
        return name;
    }
    let name: &'static std::ffi::CStr =
        Box::leak(CString::new(file).unwrap_or_default().into_boxed_c_str());
    names.push((file, name));
    name
}

/// The instance whose call this thread is running, if any (see [`on_behalf_of`]).
pub(super) fn current_caller() -> Option<Instance> {
    CALLER.with(|c| c.get())
}
