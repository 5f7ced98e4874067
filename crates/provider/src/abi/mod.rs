//! The provider's side of OpenSSL's provider ABI, and the only place of the provider that
//! handles OpenSSL's raw pointers: the operation files work on contexts, keys and parameter
//! views this module hands them.
//!
//! - [`ffi`]: the ABI types, numbers and libcrypto functions openssl-sys lacks;
//! - [`dispatch`]: typed constructors of dispatch entries (a function of the wrong signature
//!   for its id does not compile) and terminated tables whose size the compiler counts;
//! - [`guard`]: the panic guard every `extern "C"` entry runs its body under;
//! - [`context`]: operation contexts and key objects behind OpenSSL's `void *`, with the
//!   newctx/freectx/dupctx entries written once;
//! - [`params`]: reading and answering `OSSL_PARAM` arrays, and calling OpenSSL's callbacks;
//! - [`io`]: core BIOs and the caller's output buffers;
//! - [`reference`]: objects lent to libcrypto by reference (store and decoder to keymgmt `load`);
//! - [`core`]: the core's handle, library context and error functions;
//! - [`conf`]: the provider's section of the configuration file, for keys the core does not pass;
//! - [`builtin`]: the application's side, for a program that registers this provider as a
//!   built-in in a library context of its own.

pub mod builtin;
pub mod conf;
pub mod context;
pub mod core;
pub mod dispatch;
pub mod ffi;
pub mod guard;
pub mod io;
pub mod params;
pub mod reference;

pub use context::Made;
pub use guard::{guard, guard_in};

/// A `&'static [OSSL_DISPATCH]` of the given entries and the terminator.
macro_rules! dispatch_table {
    ($($entry:expr),* $(,)?) => {
        &[$($entry,)* $crate::abi::dispatch::END]
    };
}

/// A `&'static [OSSL_ALGORITHM]` of the given entries and the terminator.
macro_rules! algorithm_table {
    ($($entry:expr),* $(,)?) => {
        &[$($entry,)* $crate::abi::dispatch::ALGORITHM_END]
    };
}

/// A `&'static [ParamDescriptor]` (a gettable/settable table) of the given entries and the
/// terminator.
macro_rules! param_table {
    ($($entry:expr),* $(,)?) => {
        &[$($entry,)* $crate::abi::ffi::PARAM_END]
    };
}

pub(crate) use {algorithm_table, dispatch_table, param_table};
