//! The iotsafe provider in two library contexts of one process, driven through OpenSSL's C
//! API as a C program would: every call must use the provider instance it came through.
//! One context's key references name its own card; another context, configured for a reader
//! that does not exist, is loaded and unloaded while the first one decodes.

mod common;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::card::CardRig;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;

#[allow(non_camel_case_types)]
type OSSL_LIB_CTX = c_void;
#[allow(non_camel_case_types)]
type OSSL_PROVIDER = c_void;

extern "C" {
    fn OSSL_LIB_CTX_new() -> *mut OSSL_LIB_CTX;
    fn OSSL_LIB_CTX_load_config(ctx: *mut OSSL_LIB_CTX, file: *const c_char) -> c_int;
    fn OSSL_LIB_CTX_free(ctx: *mut OSSL_LIB_CTX);
    fn BIO_new_mem_buf(data: *const c_void, len: c_int) -> *mut c_void;
    fn BIO_free(bio: *mut c_void) -> c_int;
    fn PEM_read_bio_PrivateKey_ex(
        bio: *mut c_void,
        out: *mut *mut c_void,
        cb: *mut c_void,
        u: *mut c_void,
        libctx: *mut OSSL_LIB_CTX,
        propq: *const c_char,
    ) -> *mut c_void;
    fn EVP_PKEY_free(pkey: *mut c_void);
    fn EVP_PKEY_get0_provider(pkey: *const c_void) -> *const OSSL_PROVIDER;
    fn OSSL_PROVIDER_get0_name(provider: *const OSSL_PROVIDER) -> *const c_char;
    fn ERR_get_error_all(
        file: *mut *const c_char,
        line: *mut c_int,
        func: *mut *const c_char,
        data: *mut *const c_char,
        flags: *mut c_int,
    ) -> std::ffi::c_ulong;
    fn ERR_error_string_n(e: std::ffi::c_ulong, buf: *mut c_char, len: usize);
}

/// A library context configured by an openssl.cnf of its own.
struct LibCtx(*mut OSSL_LIB_CTX);
// SAFETY: OpenSSL library contexts may be used from any thread.
unsafe impl Send for LibCtx {}
unsafe impl Sync for LibCtx {}

impl LibCtx {
    fn with_config(path: &Path) -> LibCtx {
        let path = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: plain C API calls with valid arguments.
        unsafe {
            let ctx = OSSL_LIB_CTX_new();
            assert!(!ctx.is_null());
            assert_eq!(
                OSSL_LIB_CTX_load_config(ctx, path.as_ptr()),
                1,
                "load config: {}",
                drain_errors()
            );
            LibCtx(ctx)
        }
    }

    /// Decodes a PEM private key in this context: the name of the provider that holds it,
    /// or the errors.
    fn decode(&self, pem: &[u8]) -> Result<String, String> {
        // SAFETY: a memory BIO over `pem`, freed here; the key is freed here.
        unsafe {
            let bio = BIO_new_mem_buf(pem.as_ptr() as *const c_void, pem.len() as c_int);
            assert!(!bio.is_null());
            let key = PEM_read_bio_PrivateKey_ex(
                bio,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                self.0,
                std::ptr::null(),
            );
            BIO_free(bio);
            if key.is_null() {
                return Err(drain_errors());
            }
            let provider = EVP_PKEY_get0_provider(key);
            let name = if provider.is_null() {
                "(legacy)".to_string()
            } else {
                CStr::from_ptr(OSSL_PROVIDER_get0_name(provider))
                    .to_string_lossy()
                    .into_owned()
            };
            EVP_PKEY_free(key);
            let _ = drain_errors();
            Ok(name)
        }
    }
}

impl Drop for LibCtx {
    fn drop(&mut self) {
        // SAFETY: our context, freed once.
        unsafe { OSSL_LIB_CTX_free(self.0) };
    }
}

/// Empties this thread's error queue into one line.
fn drain_errors() -> String {
    let mut out = Vec::new();
    loop {
        let mut data: *const c_char = std::ptr::null();
        let mut flags: c_int = 0;
        // SAFETY: out-pointers to locals; the data string belongs to the queue entry.
        unsafe {
            let code = ERR_get_error_all(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut data,
                &mut flags,
            );
            if code == 0 {
                break;
            }
            let mut buf = [0 as c_char; 256];
            ERR_error_string_n(code, buf.as_mut_ptr(), buf.len());
            let mut line = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
            if !data.is_null() && flags & 0x02 != 0 {
                line.push_str(&format!(" ({})", CStr::from_ptr(data).to_string_lossy()));
            }
            out.push(line);
        }
    }
    out.join("; ")
}

/// An openssl.cnf that declares the iotsafe provider (activated or not) with these settings,
/// beside the default provider.
fn write_config(dir: &Path, name: &str, activate: bool, settings: &str) -> std::path::PathBuf {
    let module = common::built_library_dir().join("iotsafe.so");
    let path = dir.join(name);
    let activate = if activate { "activate = 1\n" } else { "" };
    std::fs::write(
        &path,
        format!(
            "openssl_conf = conf\n[conf]\nproviders = providers\n\
             [providers]\ndefault = default_sect\niotsafe = iotsafe_sect\n\
             [default_sect]\nactivate = 1\n\
             [iotsafe_sect]\nmodule = {}\n{activate}{settings}\n",
            module.display()
        ),
    )
    .unwrap();
    path
}

struct Setup {
    rig: CardRig,
    dir: tempfile::TempDir,
    /// A key reference naming only the key: the card comes from the context's configuration.
    keyref: Vec<u8>,
    /// An ordinary EC private key, which the provider's PEM decoder also sees.
    software_pem: Vec<u8>,
}

fn setup() -> Setup {
    let rig = CardRig::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let keyref = iotsafe_dane::provider::uri::keyref_pem("iotsafe:key-id=01").into_bytes();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let software = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let software_pem = software.private_key_to_pem_pkcs8().unwrap();
    Setup {
        rig,
        dir,
        keyref,
        software_pem,
    }
}

/// A context whose provider reaches the simulated card.
fn card_context(setup: &Setup) -> LibCtx {
    LibCtx::with_config(&write_config(
        setup.dir.path(),
        "card.cnf",
        true,
        "reader = Virtual PCD",
    ))
}

/// The other context's provider is configured for a reader that is not there.
const ELSEWHERE: &str = "reader = No Such Reader Anywhere";

#[test]
fn provider_calls_use_the_context_they_came_through() {
    let setup = setup();
    let card = card_context(&setup);
    assert_eq!(card.decode(&setup.keyref).as_deref(), Ok("iotsafe"));
    // A second context, loaded later, with settings of its own.
    let elsewhere = LibCtx::with_config(&write_config(setup.dir.path(), "b.cnf", true, ELSEWHERE));
    assert_eq!(
        card.decode(&setup.keyref).as_deref(),
        Ok("iotsafe"),
        "a key reference decoded in the first context must use the first context's settings"
    );
    let refused = elsewhere.decode(&setup.keyref).unwrap_err();
    assert!(refused.contains("No Such Reader"), "{refused}");
    // Errors raised in one context after the other is gone still reach the caller.
    drop(elsewhere);
    assert_eq!(card.decode(&setup.keyref).as_deref(), Ok("iotsafe"));
    assert_eq!(card.decode(&setup.software_pem).as_deref(), Ok("default"));
}

/// The card connection is the process's: another context unloading the provider leaves it
/// open for the contexts still using it (no channel closed, nothing read again).
#[test]
fn another_contexts_teardown_leaves_the_card_connection_open() {
    let setup = setup();
    let card = card_context(&setup);
    assert_eq!(card.decode(&setup.keyref).as_deref(), Ok("iotsafe"));
    let before = setup.rig.trace().len();
    drop(LibCtx::with_config(&write_config(
        setup.dir.path(),
        "other.cnf",
        true,
        "reader = Virtual PCD",
    )));
    assert_eq!(card.decode(&setup.keyref).as_deref(), Ok("iotsafe"));
    let after = setup.rig.trace()[before..].to_vec();
    assert!(
        !after.iter().any(|apdu| apdu.starts_with("007080")),
        "a channel was closed by the other context's teardown: {after:?}"
    );
}

/// Two key references that name the one card differently (a reader filter, and none at all
/// on a host with one reader) share one connection: one logical channel is opened, not two.
#[test]
fn key_references_naming_one_card_differently_share_its_connection() {
    let setup = setup();
    let card = LibCtx::with_config(&write_config(setup.dir.path(), "plain.cnf", true, ""));
    let by_filter =
        iotsafe_dane::provider::uri::keyref_pem("iotsafe:reader=Virtual;key-id=01").into_bytes();
    assert_eq!(card.decode(&setup.keyref).as_deref(), Ok("iotsafe"));
    assert_eq!(card.decode(&by_filter).as_deref(), Ok("iotsafe"));
    let opened = setup
        .rig
        .trace()
        .iter()
        .filter(|apdu| apdu.starts_with("0070000001"))
        .count();
    assert_eq!(opened, 1, "{:?}", setup.rig.trace());
}

/// Rounds of decoding (each a key reference and an ordinary key) while another thread
/// initialises and tears down the provider in other contexts as fast as it can. (A provider
/// stays initialised in its context until the context is freed, so each cycle is a context.)
const ROUNDS: usize = 300;
/// Decoding stops early after this many failures (the old code fails every one).
const ENOUGH_FAILURES: usize = 5;

#[test]
fn provider_survives_another_context_loading_and_unloading_it() {
    let setup = setup();
    let card = card_context(&setup);
    let churn_config = write_config(setup.dir.path(), "churn.cnf", true, ELSEWHERE);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut cycles = 0usize;
            while !stop.load(Ordering::Acquire) {
                // Loads the provider (init), then frees the context (teardown).
                drop(LibCtx::with_config(&churn_config));
                cycles += 1;
            }
            cycles
        })
    };
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        for (what, pem, provider) in [
            ("key reference", &setup.keyref, "iotsafe"),
            ("software key", &setup.software_pem, "default"),
        ] {
            match card.decode(pem) {
                Ok(name) if name == provider => {}
                other => failures.push(format!("round {round}, {what}: {other:?}")),
            }
        }
        if failures.len() >= ENOUGH_FAILURES {
            break;
        }
    }
    stop.store(true, Ordering::Release);
    let cycles = loader.join().expect("the loading thread");
    assert!(cycles > 0, "the other context never loaded the provider");
    assert!(
        failures.is_empty(),
        "decodes went wrong while other contexts loaded the provider {cycles} times: {failures:#?}"
    );
}
