//! The OpenSSL 3 provider "iotsafe": keys of the IoT SAFE applet as ordinary `EVP_PKEY`s.
//!
//! It registers only what needs the card: EC key management, ECDSA signatures, ECDH key
//! exchange, a store for `iotsafe:` URIs, decoders for key-reference files and encoders for
//! public keys. Digests, verification and everything else stay with the default provider.
//! Nothing here touches the card until an operation needs it (see [`card`]).
//!
//! One file per operation, written as safe Rust over its context; [`abi`] holds the provider
//! ABI (types, dispatch tables, parameters, the panic guard every `extern "C"` function runs
//! its body under) and all raw pointer handling. [`instance`] is the state of one provider
//! instance, [`key`] the key model behind key objects.

pub(crate) mod abi;
pub mod builtin;
pub mod card;
pub mod config;
mod decoder;
mod encoder;
mod error;
mod instance;
mod key;
mod keyexch;
mod keymgmt;
pub mod keys;
mod signature;
mod store;
pub mod uri;

use std::ffi::{c_int, c_void};

use abi::dispatch::*;
/// The ABI types, under the name the configuration reader and the fuzzing helpers use.
#[doc(hidden)]
pub use abi::ffi;
use abi::ffi::*;
use abi::params::ParamsOut;
use abi::{algorithm_table, dispatch_table, guard, guard_in, param_table};
use instance::{Instance, Provider};

pub use config::Settings;
pub use error::Reason;

/// The provider's name, as openssl.cnf and error messages use it.
pub const NAME: &str = "iotsafe";
const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(v) => v,
    Err(_) => c"0",
};
/// Properties of every algorithm: no default properties, only the provider's name.
const PROPERTIES: &[u8] = b"provider=iotsafe\0";

/// The key type name: the same as the default provider's, so that libssl and the
/// certificate code treat a card key as the EC key it is.
const EC_NAMES: &[u8] = b"EC:id-ecPublicKey:1.2.840.10045.2.1\0";

const KEYMGMT: &[OSSL_ALGORITHM] = algorithm_table![algorithm(
    EC_NAMES,
    PROPERTIES,
    keymgmt::FUNCTIONS,
    b"IoT SAFE applet EC key\0",
)];
const SIGNATURE: &[OSSL_ALGORITHM] = algorithm_table![algorithm(
    b"ECDSA\0",
    PROPERTIES,
    signature::FUNCTIONS,
    b"ECDSA with the applet's key\0",
)];
const KEYEXCH: &[OSSL_ALGORITHM] = algorithm_table![algorithm(
    b"ECDH\0",
    PROPERTIES,
    keyexch::FUNCTIONS,
    b"ECDH with the applet's key\0",
)];
const STORE: &[OSSL_ALGORITHM] = algorithm_table![algorithm(
    b"iotsafe\0",
    PROPERTIES,
    store::FUNCTIONS,
    b"IoT SAFE applet objects\0",
)];
const DECODER: &[OSSL_ALGORITHM] = algorithm_table![
    algorithm(
        b"DER\0",
        b"provider=iotsafe,input=pem\0",
        decoder::PEM_FUNCTIONS,
        b"IoT SAFE key reference PEM to DER\0",
    ),
    algorithm(
        EC_NAMES,
        b"provider=iotsafe,input=der,structure=iotsafe-keyref\0",
        decoder::KEYREF_FUNCTIONS,
        b"IoT SAFE key reference to a card key\0",
    ),
];
const ENCODER: &[OSSL_ALGORITHM] = algorithm_table![
    algorithm(
        EC_NAMES,
        b"provider=iotsafe,output=der,structure=SubjectPublicKeyInfo\0",
        encoder::SPKI_DER_FUNCTIONS,
        b"card public key as SubjectPublicKeyInfo DER\0",
    ),
    algorithm(
        EC_NAMES,
        b"provider=iotsafe,output=pem,structure=SubjectPublicKeyInfo\0",
        encoder::SPKI_PEM_FUNCTIONS,
        b"card public key as SubjectPublicKeyInfo PEM\0",
    ),
    algorithm(
        EC_NAMES,
        b"provider=iotsafe,output=text\0",
        encoder::TEXT_FUNCTIONS,
        b"card public key as text\0",
    ),
];

/// The algorithms of an operation, or None for operations the provider leaves to others.
fn algorithms(operation_id: c_int) -> Option<&'static [OSSL_ALGORITHM]> {
    Some(match operation_id {
        OSSL_OP_KEYMGMT => KEYMGMT,
        OSSL_OP_SIGNATURE => SIGNATURE,
        OSSL_OP_KEYEXCH => KEYEXCH,
        OSSL_OP_STORE => STORE,
        OSSL_OP_DECODER => DECODER,
        OSSL_OP_ENCODER => ENCODER,
        _ => return None,
    })
}

unsafe extern "C" fn query_operation(
    provctx: *mut c_void,
    operation_id: c_int,
    no_cache: *mut c_int,
) -> *const OSSL_ALGORITHM {
    // SAFETY: the core passes NULL or a valid int pointer; the provctx of this call.
    let (no_cache, instance) = unsafe { (no_cache.as_mut(), Instance::from_provctx(provctx)) };
    guard_in(instance, std::ptr::null(), || {
        if let Some(no_cache) = no_cache {
            *no_cache = 0;
        }
        algorithms(operation_id).map_or(std::ptr::null(), <[_]>::as_ptr)
    })
}

const GETTABLE: &[ParamDescriptor] = param_table![
    param(b"name\0", OSSL_PARAM_UTF8_PTR),
    param(b"version\0", OSSL_PARAM_UTF8_PTR),
    param(b"status\0", OSSL_PARAM_INTEGER),
];

unsafe extern "C" fn gettable_params(_provctx: *mut c_void) -> *const OSSL_PARAM {
    GETTABLE.as_ptr() as *const OSSL_PARAM
}

unsafe extern "C" fn get_params(provctx: *mut c_void, out: *mut OSSL_PARAM) -> c_int {
    // SAFETY: the provctx of this call and the caller's NULL-terminated parameter array.
    let (instance, mut out) = unsafe { (Instance::from_provctx(provctx), ParamsOut::new(out)) };
    guard_in(instance, 0, || {
        (out.static_utf8(c"name", c"IoT SAFE applet provider")
            && out.static_utf8(c"version", VERSION)
            && out.int(c"status", 1))
        .into()
    })
}

unsafe extern "C" fn teardown(provctx: *mut c_void) {
    guard((), || {
        // SAFETY: our provider context, torn down once, after every object made through it
        // is gone.
        if let Some(instance) = unsafe { Instance::from_provctx(provctx) } {
            // The card connections are the process's, shared by every library context that
            // loaded the provider: another context's teardown leaves them to the others.
            if unsafe { instance.tear_down() } {
                card::close_all();
            }
        }
    })
}

const PROVIDER_FUNCTIONS: &[OSSL_DISPATCH] = dispatch_table![
    provider_teardown(teardown),
    provider_gettable_params(gettable_params),
    provider_get_params(get_params),
    provider_query_operation(query_operation),
    provider_get_reason_strings(error::reason_strings),
];

/// The keys of the provider's section in the configuration file OpenSSL reads, checked for
/// ones nobody reads (the core passes only the keys asked for by name).
fn check_own_section(provider_name: &str) -> Result<(), String> {
    let Some(file) = abi::conf::config_file() else {
        return Ok(());
    };
    match abi::conf::provider_section(&file, provider_name) {
        Some((section, lines)) => config::check_section_keys(&section, &lines),
        None => Ok(()),
    }
}

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
        // SAFETY: the core's handle and table (the function's contract).
        let core = unsafe { abi::core::Core::from_dispatch(handle, input) };
        let (from_file, name) = match core.params_reader() {
            // SAFETY: the core's get_params with this provider's handle.
            Some((get, handle)) => unsafe {
                (
                    config::read_core_params(get, handle),
                    config::provider_name(get, handle),
                )
            },
            None => Default::default(),
        };
        let mut provider = Provider {
            core,
            settings: Settings::default(),
            config_error: None,
        };
        let settings = Settings::from_sources(&from_file, |name| {
            builtin::program_setting(name).or_else(|| std::env::var(name).ok())
        });
        match settings {
            Ok(settings) => provider.settings = settings,
            Err(message) => provider.config_error = Some(message),
        }
        // The first configuration mistake is the one reported; each is named with its key.
        let later_checks =
            config::open_debug_log(&provider.settings).and_then(|()| check_own_section(&name));
        if let (None, Err(message)) = (&provider.config_error, later_checks) {
            provider.config_error = Some(message);
        }
        config::debug(format_args!(
            "provider initialised: {:?}",
            provider.settings
        ));
        // SAFETY: the caller's out-pointers. The instance is freed in teardown.
        unsafe {
            *out = PROVIDER_FUNCTIONS.as_ptr();
            *provctx = Instance::create(provider).as_provctx();
        }
        1
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The function ids of a table, walked as OpenSSL walks it: from its address to the
    /// zero id (at most 64 entries, so that a missing terminator fails the test).
    fn walked(table: *const OSSL_DISPATCH) -> Vec<c_int> {
        let mut ids = Vec::new();
        for index in 0..64 {
            // SAFETY: a table of ours; the walk stops at its terminator, which the test checks
            // is there.
            let entry = unsafe { &*table.add(index) };
            if entry.function_id == 0 {
                assert!(entry.function.is_none(), "the terminator has no function");
                return ids;
            }
            assert!(
                entry.function.is_some(),
                "id {} has a function",
                entry.function_id
            );
            ids.push(entry.function_id);
        }
        panic!("no terminator within 64 entries")
    }

    #[test]
    fn every_dispatch_table_is_terminated_once_with_distinct_ids() {
        let tables = [
            PROVIDER_FUNCTIONS,
            keymgmt::FUNCTIONS,
            signature::FUNCTIONS,
            keyexch::FUNCTIONS,
            store::FUNCTIONS,
            decoder::PEM_FUNCTIONS,
            decoder::KEYREF_FUNCTIONS,
            encoder::SPKI_DER_FUNCTIONS,
            encoder::SPKI_PEM_FUNCTIONS,
            encoder::TEXT_FUNCTIONS,
        ];
        for table in tables {
            // Exactly one terminator, at the end: no doubled or missing one.
            let entries = abi::dispatch::entries_of(table).expect("one terminator, at the end");
            let distinct: BTreeSet<_> = entries.iter().map(|e| e.function_id).collect();
            assert_eq!(distinct.len(), entries.len(), "an id twice");
        }
        // What OpenSSL reaches through query_operation is terminated at every level.
        let mut implementations = 0;
        for op in [
            OSSL_OP_KEYMGMT,
            OSSL_OP_SIGNATURE,
            OSSL_OP_KEYEXCH,
            OSSL_OP_STORE,
            OSSL_OP_DECODER,
            OSSL_OP_ENCODER,
        ] {
            let algorithms = algorithms(op).expect("offered");
            let (end, offered) = algorithms.split_last().unwrap();
            assert!(end.algorithm_names.is_null() && end.implementation.is_null());
            for algorithm in offered {
                assert!(!algorithm.algorithm_names.is_null());
                let ids = walked(algorithm.implementation);
                let distinct: BTreeSet<_> = ids.iter().collect();
                assert_eq!(distinct.len(), ids.len(), "an id twice in {ids:?}");
                implementations += 1;
            }
        }
        assert_eq!(implementations, 9);
        assert_eq!(walked(PROVIDER_FUNCTIONS.as_ptr()).len(), 5);
        assert!(algorithms(9999).is_none());
    }

    #[test]
    fn parameter_tables_end_with_the_terminator() {
        let (end, entries) = GETTABLE.split_last().unwrap();
        assert!(end.0.key.is_null());
        assert_eq!(entries.len(), 3);
        assert!(entries.iter().all(|p| !p.0.key.is_null()));
    }
}
