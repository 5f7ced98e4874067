//! The OpenSSL 3 provider "iotsafe": keys of the IoT SAFE applet as ordinary `EVP_PKEY`s.
//!
//! It registers only what needs the card: EC key management, ECDSA signatures, ECDH key
//! exchange, a store for `iotsafe:` URIs, decoders for key-reference files and encoders for
//! public keys. Digests, verification and everything else stay with the default provider.
//! Nothing here touches the card until an operation needs it (see [`card`]).
//!
//! One file per operation; [`ffi`] holds the few ABI types openssl-sys lacks. Every
//! `extern "C"` function runs its body under [`guard`], so no panic unwinds into C.

pub mod card;
pub mod config;
mod decoder;
mod encoder;
mod error;
#[doc(hidden)]
pub mod ffi;
mod keyexch;
mod keymgmt;
pub mod keys;
mod params;
mod signature;
mod store;
pub mod uri;

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ffi::*;

pub use config::Settings;
pub use error::Reason;

/// The provider's name, as openssl.cnf and error messages use it.
pub const NAME: &str = "iotsafe";
/// Properties of every algorithm: no default properties, only the provider's name.
const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(v) => v,
    Err(_) => c"0",
};
const PROPERTIES: &[u8] = b"provider=iotsafe\0";

/// What the provider keeps per `OSSL_provider_init`, i.e. per library context that loads it:
/// the core's handle and functions, its own library context, the configuration. Every call
/// uses the instance it came through (its provctx, or the key or operation context made
/// through it): two library contexts may load the provider with different settings, and one
/// may tear its instance down while the other is in use.
pub struct Provider {
    handle: *const OSSL_CORE_HANDLE,
    libctx: *mut OSSL_LIB_CTX,
    new_error: Option<CoreNewErrorFn>,
    set_error_debug: Option<CoreSetErrorDebugFn>,
    vset_error: Option<CoreVsetErrorFn>,
    pub settings: Settings,
    /// A configuration error: the provider loads (OpenSSL drops errors raised while it reads
    /// openssl.cnf), and every operation that needs the card fails with this message.
    config_error: Option<String>,
}

/// A provider instance, as its calls reach it: the provctx OpenSSL passes, kept in the keys
/// and operation contexts made through it (OpenSSL passes no provctx to most key management
/// functions). OpenSSL holds a reference to the provider for as long as any of those objects
/// lives and tears the instance down only after the last one is gone, so an `Instance` found
/// in a live object or passed as provctx is valid for the whole call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Instance(std::ptr::NonNull<Provider>);

// SAFETY: the handle and library context are owned by the core, which allows their use from
// any thread; the struct is not mutated between init and teardown.
unsafe impl Send for Instance {}
unsafe impl Sync for Instance {}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Instance({:p})", self.0)
    }
}

impl Instance {
    /// The instance behind a provctx OpenSSL passes to a call.
    ///
    /// # Safety
    /// `provctx` is NULL or what `OSSL_provider_init` returned, not yet torn down.
    pub(crate) unsafe fn from_provctx(provctx: *mut c_void) -> Option<Instance> {
        std::ptr::NonNull::new(provctx as *mut Provider).map(Instance)
    }

    fn provider(&self) -> &Provider {
        // SAFETY: valid from init to teardown, and no call of the instance runs after its
        // teardown (see the type's comment).
        unsafe { self.0.as_ref() }
    }

    /// This instance's library context (for BIOs handed through the core).
    pub(crate) fn libctx(&self) -> *mut OSSL_LIB_CTX {
        self.provider().libctx
    }

    /// This instance's settings (openssl.cnf + environment); a configuration error is raised
    /// on OpenSSL's queue.
    pub(crate) fn settings(&self) -> Option<Settings> {
        let provider = self.provider();
        match &provider.config_error {
            Some(message) => {
                error::raise(Reason::BadConfig, message);
                None
            }
            None => Some(provider.settings.clone()),
        }
    }
}

/// Runs the body of an `extern "C"` function called through `instance`: errors (and a panic,
/// which becomes an error and the `fallback` return value instead of unwinding into C) are
/// reported through that instance.
pub(crate) fn guard_in<R>(instance: Option<Instance>, fallback: R, body: impl FnOnce() -> R) -> R {
    error::on_behalf_of(instance, || guard(fallback, body))
}

/// Like [`guard_in`], for the few functions that learn no instance (errors then go through
/// the instance of an enclosing call on this thread, if any: see [`error::raise`]).
pub(crate) fn guard<R>(fallback: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            error::raise(Reason::Internal, &format!("internal error (panic: {what})"));
            fallback
        }
    }
}

macro_rules! dispatch {
    ($id:expr, $f:expr) => {
        $crate::ffi::OSSL_DISPATCH {
            function_id: $id,
            // SAFETY: OpenSSL calls the function through the signature its id prescribes,
            // which is the one `$f` has.
            function: Some(unsafe {
                std::mem::transmute::<*const (), unsafe extern "C" fn()>($f as *const ())
            }),
        }
    };
}
macro_rules! dispatch_end {
    () => {
        $crate::ffi::OSSL_DISPATCH {
            function_id: 0,
            function: None,
        }
    };
}
pub(crate) use {dispatch, dispatch_end};

const fn algorithm(
    names: &'static [u8],
    implementation: &'static [OSSL_DISPATCH],
    description: &'static [u8],
) -> OSSL_ALGORITHM {
    algorithm_with(names, PROPERTIES, implementation, description)
}

const fn algorithm_with(
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

const ALGORITHM_END: OSSL_ALGORITHM = OSSL_ALGORITHM {
    algorithm_names: std::ptr::null(),
    property_definition: std::ptr::null(),
    implementation: std::ptr::null(),
    algorithm_description: std::ptr::null(),
};

/// The key type name: the same as the default provider's, so that libssl and the
/// certificate code treat a card key as the EC key it is.
const EC_NAMES: &[u8] = b"EC:id-ecPublicKey:1.2.840.10045.2.1\0";

static KEYMGMT: [OSSL_ALGORITHM; 2] = [
    algorithm(EC_NAMES, &keymgmt::FUNCTIONS, b"IoT SAFE applet EC key\0"),
    ALGORITHM_END,
];
static SIGNATURE: [OSSL_ALGORITHM; 2] = [
    algorithm(
        b"ECDSA\0",
        &signature::FUNCTIONS,
        b"ECDSA with the applet's key\0",
    ),
    ALGORITHM_END,
];
static KEYEXCH: [OSSL_ALGORITHM; 2] = [
    algorithm(
        b"ECDH\0",
        &keyexch::FUNCTIONS,
        b"ECDH with the applet's key\0",
    ),
    ALGORITHM_END,
];
static STORE: [OSSL_ALGORITHM; 2] = [
    algorithm(
        b"iotsafe\0",
        &store::FUNCTIONS,
        b"IoT SAFE applet objects\0",
    ),
    ALGORITHM_END,
];
static DECODER: [OSSL_ALGORITHM; 3] = [
    algorithm_with(
        b"DER\0",
        b"provider=iotsafe,input=pem\0",
        &decoder::PEM_FUNCTIONS,
        b"IoT SAFE key reference PEM to DER\0",
    ),
    algorithm_with(
        EC_NAMES,
        b"provider=iotsafe,input=der,structure=iotsafe-keyref\0",
        &decoder::KEYREF_FUNCTIONS,
        b"IoT SAFE key reference to a card key\0",
    ),
    ALGORITHM_END,
];
static ENCODER: [OSSL_ALGORITHM; 4] = [
    algorithm_with(
        EC_NAMES,
        b"provider=iotsafe,output=der,structure=SubjectPublicKeyInfo\0",
        &encoder::SPKI_DER_FUNCTIONS,
        b"card public key as SubjectPublicKeyInfo DER\0",
    ),
    algorithm_with(
        EC_NAMES,
        b"provider=iotsafe,output=pem,structure=SubjectPublicKeyInfo\0",
        &encoder::SPKI_PEM_FUNCTIONS,
        b"card public key as SubjectPublicKeyInfo PEM\0",
    ),
    algorithm_with(
        EC_NAMES,
        b"provider=iotsafe,output=text\0",
        &encoder::TEXT_FUNCTIONS,
        b"card public key as text\0",
    ),
    ALGORITHM_END,
];

unsafe extern "C" fn query_operation(
    provctx: *mut c_void,
    operation_id: c_int,
    no_cache: *mut c_int,
) -> *const OSSL_ALGORITHM {
    // SAFETY: the provctx of this call.
    guard_in(
        unsafe { Instance::from_provctx(provctx) },
        std::ptr::null(),
        || {
            if !no_cache.is_null() {
                // SAFETY: the core passes a valid int pointer.
                unsafe { *no_cache = 0 };
            }
            match operation_id {
                OSSL_OP_KEYMGMT => KEYMGMT.as_ptr(),
                OSSL_OP_SIGNATURE => SIGNATURE.as_ptr(),
                OSSL_OP_KEYEXCH => KEYEXCH.as_ptr(),
                OSSL_OP_STORE => STORE.as_ptr(),
                OSSL_OP_DECODER => DECODER.as_ptr(),
                OSSL_OP_ENCODER => ENCODER.as_ptr(),
                _ => std::ptr::null(),
            }
        },
    )
}

static GETTABLE: [ParamDescriptor; 4] = [
    param(b"name\0", OSSL_PARAM_UTF8_PTR),
    param(b"version\0", OSSL_PARAM_UTF8_PTR),
    param(b"status\0", OSSL_PARAM_INTEGER),
    PARAM_END,
];

unsafe extern "C" fn gettable_params(_provctx: *mut c_void) -> *const OSSL_PARAM {
    GETTABLE.as_ptr() as *const OSSL_PARAM
}

unsafe extern "C" fn get_params(provctx: *mut c_void, out: *mut OSSL_PARAM) -> c_int {
    // SAFETY: the provctx of this call.
    guard_in(unsafe { Instance::from_provctx(provctx) }, 0, || {
        // SAFETY: `out` is the caller's NULL-terminated parameter array.
        unsafe {
            params::set_static_utf8(out, c"name", c"IoT SAFE applet provider")
                && params::set_static_utf8(out, c"version", VERSION)
                && params::set_int(out, c"status", 1)
        }
        .into()
    })
}

unsafe extern "C" fn teardown(provctx: *mut c_void) {
    guard((), || {
        if provctx.is_null() {
            return;
        }
        // SAFETY: our provider context, torn down once, after every object made through it
        // is gone; its library context is ours to free.
        let provider = unsafe { Box::from_raw(provctx as *mut Provider) };
        if !provider.libctx.is_null() {
            // SAFETY: created in init for this instance alone.
            unsafe { OSSL_LIB_CTX_free(provider.libctx) };
        }
    })
}

static PROVIDER_FUNCTIONS: [OSSL_DISPATCH; 6] = [
    dispatch!(OSSL_FUNC_PROVIDER_TEARDOWN, teardown),
    dispatch!(OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, gettable_params),
    dispatch!(OSSL_FUNC_PROVIDER_GET_PARAMS, get_params),
    dispatch!(OSSL_FUNC_PROVIDER_QUERY_OPERATION, query_operation),
    dispatch!(OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, error::reason_strings),
    dispatch_end!(),
];

/// The provider's entry point. No card I/O here: only the configuration is read.
///
/// # Safety
/// Called by OpenSSL's core with its handle and dispatch table.
#[no_mangle]
pub unsafe extern "C" fn OSSL_provider_init(
    handle: *const OSSL_CORE_HANDLE,
    input: *const OSSL_DISPATCH,
    out: *mut *const OSSL_DISPATCH,
    provctx: *mut *mut c_void,
) -> c_int {
    guard(0, || {
        let mut provider = Provider {
            handle,
            libctx: std::ptr::null_mut(),
            new_error: None,
            set_error_debug: None,
            vset_error: None,
            settings: Settings::default(),
            config_error: None,
        };
        let mut get_core_params: Option<CoreGetParamsFn> = None;
        // SAFETY: `input` is the core's table, terminated by a zero function id; each
        // function has the signature its id prescribes.
        unsafe {
            let mut entry = input;
            while !entry.is_null() && (*entry).function_id != 0 {
                let function = (*entry).function;
                match (*entry).function_id {
                    OSSL_FUNC_CORE_GET_PARAMS => {
                        get_core_params = function.map(|f| std::mem::transmute(f))
                    }
                    OSSL_FUNC_CORE_NEW_ERROR => {
                        provider.new_error = function.map(|f| std::mem::transmute(f))
                    }
                    OSSL_FUNC_CORE_SET_ERROR_DEBUG => {
                        provider.set_error_debug = function.map(|f| std::mem::transmute(f))
                    }
                    OSSL_FUNC_CORE_VSET_ERROR => {
                        provider.vset_error = function.map(|f| std::mem::transmute(f))
                    }
                    _ => {}
                }
                entry = entry.add(1);
            }
            provider.libctx = OSSL_LIB_CTX_new_from_dispatch(handle, input);
        }
        let from_file = match get_core_params {
            // SAFETY: the core's get_params with this provider's handle.
            Some(get) => unsafe { config::read_core_params(get, handle) },
            None => Default::default(),
        };
        match Settings::from_sources(&from_file, |name| std::env::var(name).ok()) {
            Ok(settings) => provider.settings = settings,
            Err(message) => provider.config_error = Some(message),
        }
        config::open_debug_log(&provider.settings);
        config::debug(format_args!(
            "provider initialised: {:?}",
            provider.settings
        ));
        // SAFETY: the caller's out-pointers. The instance is freed in teardown.
        unsafe {
            *out = PROVIDER_FUNCTIONS.as_ptr();
            *provctx = Box::into_raw(Box::new(provider)) as *mut c_void;
        }
        1
    })
}
