//! The provider's own section of the configuration file, read with OpenSSL's configuration
//! parser: the core hands a provider only the keys it asks for by name, so a misspelt key
//! (`readr = ...`) is seen only here.
#![allow(non_camel_case_types, clippy::upper_case_acronyms)] // OpenSSL's names

use std::ffi::{c_char, c_int, c_long, c_void, CStr, CString};

use super::ffi::{CRYPTO_free, ERR_pop_to_mark, ERR_set_mark};

#[repr(C)]
struct CONF {
    _opaque: [u8; 0],
}

/// `CONF_VALUE`: one `name = value` line of a section.
#[repr(C)]
struct CONF_VALUE {
    section: *mut c_char,
    name: *mut c_char,
    value: *mut c_char,
}

extern "C" {
    fn NCONF_new(method: *mut c_void) -> *mut CONF;
    fn NCONF_free(conf: *mut CONF);
    fn NCONF_load(conf: *mut CONF, file: *const c_char, eline: *mut c_long) -> c_int;
    fn NCONF_get_string(
        conf: *const CONF,
        group: *const c_char,
        name: *const c_char,
    ) -> *mut c_char;
    fn NCONF_get_section(conf: *const CONF, section: *const c_char) -> *mut c_void;
    fn OPENSSL_sk_num(stack: *const c_void) -> c_int;
    fn OPENSSL_sk_value(stack: *const c_void, index: c_int) -> *mut c_void;
    fn CONF_get1_default_config_file() -> *mut c_char;
}

/// The file OpenSSL reads its configuration from: `OPENSSL_CONF`, else its default.
pub fn config_file() -> Option<String> {
    if let Some(path) = std::env::var("OPENSSL_CONF").ok().filter(|p| !p.is_empty()) {
        return Some(path);
    }
    // SAFETY: returns a string OpenSSL allocated (or NULL), copied and then freed.
    unsafe {
        let path = CONF_get1_default_config_file();
        if path.is_null() {
            return None;
        }
        let copy = CStr::from_ptr(path).to_string_lossy().into_owned();
        CRYPTO_free(path as *mut c_void, c"conf.rs".as_ptr(), 0);
        Some(copy)
    }
}

/// The section that configures provider `provider` in `file` (`openssl_conf` ->
/// `providers` -> `provider = section`), with its lines; None when the file does not
/// configure the provider (or cannot be read: OpenSSL reports that itself).
pub fn provider_section(file: &str, provider: &str) -> Option<(String, Vec<(String, String)>)> {
    let file = CString::new(file).ok()?;
    let provider = CString::new(provider).ok()?;
    // SAFETY: a configuration object of our own, freed on every path; strings read from it
    // are copied before it is freed. The marks keep the lookups' "no such value" errors off
    // the caller's queue.
    unsafe {
        let conf = NCONF_new(std::ptr::null_mut());
        if conf.is_null() {
            return None;
        }
        ERR_set_mark();
        let mut eline: c_long = 0;
        let found = (NCONF_load(conf, file.as_ptr(), &mut eline) == 1)
            .then(|| {
                let init = string(conf, None, c"openssl_conf")?;
                let providers = string(conf, Some(&init), c"providers")?;
                let section = string(conf, Some(&providers), &provider)?;
                Some((section.clone(), lines(conf, &section)))
            })
            .flatten();
        ERR_pop_to_mark();
        NCONF_free(conf);
        found
    }
}

/// # Safety
/// `conf` is a loaded configuration.
unsafe fn string(conf: *const CONF, group: Option<&str>, name: &CStr) -> Option<String> {
    let group = group.map(CString::new).transpose().ok()?;
    let group_ptr = group.as_ref().map_or(std::ptr::null(), |g| g.as_ptr());
    // SAFETY: the function's contract; the result points into `conf`.
    let value = unsafe { NCONF_get_string(conf, group_ptr, name.as_ptr()) };
    // SAFETY: a NUL-terminated string owned by `conf`, copied at once.
    (!value.is_null()).then(|| {
        unsafe { CStr::from_ptr(value) }
            .to_string_lossy()
            .into_owned()
    })
}

/// # Safety
/// `conf` is a loaded configuration.
unsafe fn lines(conf: *const CONF, section: &str) -> Vec<(String, String)> {
    let Ok(name) = CString::new(section) else {
        return Vec::new();
    };
    // SAFETY: the function's contract; the stack and its values belong to `conf` and are
    // copied at once.
    unsafe {
        let stack = NCONF_get_section(conf, name.as_ptr());
        if stack.is_null() {
            return Vec::new();
        }
        (0..OPENSSL_sk_num(stack))
            .filter_map(|i| {
                let value = OPENSSL_sk_value(stack, i) as *const CONF_VALUE;
                let value = value.as_ref()?;
                if value.name.is_null() || value.value.is_null() {
                    return None;
                }
                Some((
                    CStr::from_ptr(value.name).to_string_lossy().into_owned(),
                    CStr::from_ptr(value.value).to_string_lossy().into_owned(),
                ))
            })
            .collect()
    }
}
