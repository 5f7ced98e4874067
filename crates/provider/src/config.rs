//! Settings: which reader, applet and objects the provider uses, and its debug log.
//!
//! They come from the provider's section of openssl.cnf (read once, in `OSSL_provider_init`),
//! are overridden by environment variables, and an `iotsafe:` URI overrides both for the
//! objects it names. The card attributes and their environment variables are those of the card
//! layer's table ([`iotsafe_card::target`]); the provider adds one of its own:
//!
//! | openssl.cnf       | environment          | meaning                                      |
//! |-------------------|----------------------|----------------------------------------------|
//! | `debug-log`       | `IOTSAFE_DEBUG_LOG`  | append a trace of the provider's calls here  |
//!
//! Defaults where nothing names them: the first signing key and the first certificate on the
//! applet, the key's public half under the same id or label, ECDH peer slot `10`. A URI may
//! name only the configured modem ([`super::uri::KeyUri::settings_over`]).

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::io::Write;
use std::sync::Mutex;

use super::ffi::{CoreGetParamsFn, OSSL_CORE_HANDLE, OSSL_PARAM};
use iotsafe_card::target::{self, Target};

/// The provider's own attribute (not a card attribute, and never in a URI).
pub const DEBUG_LOG_ATTRIBUTE: (&str, &str) = ("debug-log", "IOTSAFE_DEBUG_LOG");

/// Every attribute openssl.cnf and the environment may set, with its environment variable.
pub fn attributes() -> impl Iterator<Item = (&'static str, &'static str)> {
    target::ATTRIBUTES
        .iter()
        .map(|a| (a.name, a.env))
        .chain([DEBUG_LOG_ATTRIBUTE])
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The card, applet and objects.
    pub target: Target,
    pub debug_log: Option<String>,
}

impl Settings {
    /// Sets one attribute from its textual value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        if name == DEBUG_LOG_ATTRIBUTE.0 {
            self.debug_log = Some(value.trim().to_string());
            Ok(())
        } else {
            self.target.set(name, value)
        }
    }

    /// openssl.cnf values, then environment overrides.
    pub fn from_sources(
        file: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (name, variable) in attributes() {
            if let Some(value) = file.get(name) {
                settings
                    .set(name, value)
                    .map_err(|e| format!("openssl.cnf: {e}"))?;
            }
            if let Some(value) = env(variable).filter(|v| !v.is_empty()) {
                settings
                    .set(name, &value)
                    .map_err(|e| format!("{variable}: {e}"))?;
            }
        }
        Ok(settings)
    }
}

/// The provider's keys from its openssl.cnf section.
///
/// # Safety
/// `get` is the core's get_params function and `handle` this provider's handle.
pub unsafe fn read_core_params(
    get: CoreGetParamsFn,
    handle: *const OSSL_CORE_HANDLE,
) -> BTreeMap<String, String> {
    let names: Vec<&str> = attributes().map(|(name, _)| name).collect();
    // SAFETY: the function's contract.
    unsafe { read_core_values(get, handle, &names) }
}

/// The name OpenSSL knows this provider by (the key of its line in the providers section).
///
/// # Safety
/// As [`read_core_params`].
pub unsafe fn provider_name(get: CoreGetParamsFn, handle: *const OSSL_CORE_HANDLE) -> String {
    // SAFETY: the function's contract.
    unsafe { read_core_values(get, handle, &["provider-name"]) }
        .remove("provider-name")
        .unwrap_or_else(|| "iotsafe".to_string())
}

/// The core's values of `wanted`, those it has.
///
/// # Safety
/// As [`read_core_params`].
unsafe fn read_core_values(
    get: CoreGetParamsFn,
    handle: *const OSSL_CORE_HANDLE,
    wanted: &[&str],
) -> BTreeMap<String, String> {
    let names: Vec<std::ffi::CString> = wanted
        .iter()
        .map(|name| std::ffi::CString::new(*name).expect("parameter names have no NUL"))
        .collect();
    let mut values: Vec<*mut c_char> = vec![std::ptr::null_mut(); names.len()];
    // SAFETY: the parameters point at `names` and `values`, which outlive the core's call;
    // `get` and `handle` are the core's (the function's contract); a modified parameter
    // points at the core's NUL-terminated value.
    unsafe {
        let mut params: Vec<OSSL_PARAM> = names
            .iter()
            .zip(values.iter_mut())
            .map(|(name, value)| super::ffi::OSSL_PARAM_construct_utf8_ptr(name.as_ptr(), value, 0))
            .collect();
        params.push(openssl_sys::OSSL_PARAM_construct_end());
        let mut found = BTreeMap::new();
        if get(handle, params.as_mut_ptr()) != 1 {
            return found;
        }
        for (index, name) in wanted.iter().enumerate() {
            let value = values[index];
            if !value.is_null() && openssl_sys::OSSL_PARAM_modified(&params[index]) == 1 {
                found.insert(
                    name.to_string(),
                    CStr::from_ptr(value).to_string_lossy().into_owned(),
                );
            }
        }
        found
    }
}

/// Keys of a provider's section that OpenSSL itself reads.
const OPENSSL_KEYS: &[&str] = &["module", "activate", "identity", "soft_load"];

/// A key of the provider's section that neither OpenSSL nor this provider knows (a
/// misspelling such as `readr`), named with its value and the keys there are.
pub fn check_section_keys(section: &str, lines: &[(String, String)]) -> Result<(), String> {
    let known = |name: &str| {
        OPENSSL_KEYS.contains(&name) || attributes().any(|(attribute, _)| attribute == name)
    };
    match lines.iter().find(|(name, _)| !known(name)) {
        None => Ok(()),
        Some((name, value)) => {
            let keys: Vec<&str> = attributes().map(|(name, _)| name).collect();
            Err(format!(
                "openssl.cnf [{section}]: unknown key '{name}' (= '{value}'); the provider's \
                 keys are {}",
                keys.join(", ")
            ))
        }
    }
}

static DEBUG_LOG: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Opens the debug log named in the settings, if any; a log that cannot be opened is a
/// configuration error naming the file (a trace asked for is never silently missing).
pub fn open_debug_log(settings: &Settings) -> Result<(), String> {
    let Some(path) = &settings.debug_log else {
        return Ok(());
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            format!(
                "debug-log (openssl.cnf) or {}: cannot open '{path}' for appending: {e}",
                DEBUG_LOG_ATTRIBUTE.1
            )
        })?;
    *DEBUG_LOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
    Ok(())
}

/// Appends one line to the debug log (when one is configured).
pub fn debug(args: std::fmt::Arguments<'_>) {
    let mut log = DEBUG_LOG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(file) = log.as_mut() {
        let _ = writeln!(file, "iotsafe[{}]: {args}", std::process::id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotsafe_card::ObjectRef;

    #[test]
    fn environment_overrides_the_file() {
        let mut file = BTreeMap::new();
        file.insert("key-id".to_string(), "01".to_string());
        file.insert("reader".to_string(), "Virtual".to_string());
        let settings =
            Settings::from_sources(&file, |v| (v == "IOTSAFE_KEY_ID").then(|| "07".to_string()))
                .unwrap();
        assert_eq!(settings.target.key, Some(ObjectRef::Id(vec![7])));
        assert_eq!(settings.target.reader.as_deref(), Some("Virtual"));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_value() {
        let line = |name: &str, value: &str| (name.to_string(), value.to_string());
        let good = [
            line("activate", "1"),
            line("module", "x.so"),
            line("reader", "V"),
        ];
        assert_eq!(check_section_keys("iotsafe_sect", &good), Ok(()));
        let e = check_section_keys("iotsafe_sect", &[line("readr", "Virtual PCD")]).unwrap_err();
        assert!(
            e.starts_with("openssl.cnf [iotsafe_sect]: unknown key 'readr' (= 'Virtual PCD')")
                && e.contains("reader, modem"),
            "{e}"
        );
    }

    #[test]
    fn an_unwritable_debug_log_is_an_error_naming_the_file() {
        let settings = Settings {
            debug_log: Some("/nonexistent-dir/iotsafe.log".into()),
            ..Settings::default()
        };
        let e = open_debug_log(&settings).unwrap_err();
        assert!(e.contains("'/nonexistent-dir/iotsafe.log'"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_their_source() {
        let mut file = BTreeMap::new();
        file.insert("cla-style".to_string(), "42".to_string());
        let e = Settings::from_sources(&file, |_| None).unwrap_err();
        assert!(e.contains("openssl.cnf") && e.contains("cla-style"), "{e}");
        let e = Settings::from_sources(&BTreeMap::new(), |v| {
            (v == "IOTSAFE_AID").then(|| "zz".to_string())
        })
        .unwrap_err();
        assert!(e.contains("IOTSAFE_AID"), "{e}");
    }
}
