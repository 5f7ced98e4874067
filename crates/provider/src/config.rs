//! Settings: which reader, applet and objects the provider uses.
//!
//! They come from the provider's section of openssl.cnf (read once, in `OSSL_provider_init`),
//! are overridden by environment variables, and an `iotsafe:` URI overrides both for the
//! objects it names. The same attribute names serve all three:
//!
//! | openssl.cnf / URI | environment          | meaning                                      |
//! |-------------------|----------------------|----------------------------------------------|
//! | `reader`          | `IOTSAFE_READER`     | first reader whose name contains this text   |
//! | `modem`           | `IOTSAFE_MODEM`      | reach the SIM through this modem AT port (AT+CSIM) instead of PC/SC (a URI may only repeat the configured one) |
//! | `aid`             | `IOTSAFE_AID`        | applet AID(s) in hex, comma-separated        |
//! | `cla-style`       | `IOTSAFE_CLA_STYLE`  | `00` or `80`: class byte of applet commands  |
//! | `channel`         | `IOTSAFE_CHANNEL`    | `logical` (default) or `basic`               |
//! | `key-id`/`key-label` | `IOTSAFE_KEY_ID`/`IOTSAFE_KEY_LABEL` | the private key (default: first signing key) |
//! | `pub-id`/`pub-label` | `IOTSAFE_PUB_ID`/`IOTSAFE_PUB_LABEL` | its public key (default: same id/label) |
//! | `cert-id`/`cert-label` | `IOTSAFE_CERT_ID`/`IOTSAFE_CERT_LABEL` | the certificate file (default: first certificate) |
//! | `dh-peer-id`      | `IOTSAFE_DH_PEER_ID` | public key slot for the ECDH peer (default `10`) |
//! | `debug-log`       | `IOTSAFE_DEBUG_LOG`  | append a trace of the provider's calls here  |

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::io::Write;
use std::sync::Mutex;

use super::ffi::{CoreGetParamsFn, OSSL_CORE_HANDLE, OSSL_PARAM};
use iotsafe_card::{AppletConfig, ChannelMode, ClaStyle, ObjectRef};
use iotsafe_hex as hex;

/// Every attribute, with its environment variable.
pub const ATTRIBUTES: &[(&str, &str)] = &[
    ("reader", "IOTSAFE_READER"),
    ("modem", "IOTSAFE_MODEM"),
    ("aid", "IOTSAFE_AID"),
    ("cla-style", "IOTSAFE_CLA_STYLE"),
    ("channel", "IOTSAFE_CHANNEL"),
    ("key-id", "IOTSAFE_KEY_ID"),
    ("key-label", "IOTSAFE_KEY_LABEL"),
    ("pub-id", "IOTSAFE_PUB_ID"),
    ("pub-label", "IOTSAFE_PUB_LABEL"),
    ("cert-id", "IOTSAFE_CERT_ID"),
    ("cert-label", "IOTSAFE_CERT_LABEL"),
    ("dh-peer-id", "IOTSAFE_DH_PEER_ID"),
    ("debug-log", "IOTSAFE_DEBUG_LOG"),
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub reader: Option<String>,
    /// A modem's AT command port: the transport instead of PC/SC.
    pub modem: Option<String>,
    pub aids: Option<Vec<Vec<u8>>>,
    pub cla_style: Option<ClaStyle>,
    pub basic_channel: Option<bool>,
    pub key: Option<ObjectRef>,
    pub public: Option<ObjectRef>,
    pub cert: Option<ObjectRef>,
    pub dh_peer: Option<ObjectRef>,
    pub debug_log: Option<String>,
}

fn object(name: &str, value: &str, by_label: bool) -> Result<ObjectRef, String> {
    if by_label {
        if value.is_empty() {
            return Err(format!("{name}: empty label"));
        }
        Ok(ObjectRef::Label(value.to_string()))
    } else {
        ObjectRef::id_from_hex(value).map_err(|e| format!("{name}: {e}"))
    }
}

impl Settings {
    /// Sets one attribute from its textual value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        match name {
            "reader" => self.reader = Some(value.to_string()),
            "modem" => self.modem = Some(value.to_string()),
            "aid" => {
                let aids = value
                    .split(',')
                    .map(|aid| hex::decode(aid.trim()).map_err(|e| format!("aid '{aid}': {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                if aids.iter().any(|a| a.len() < 5 || a.len() > 16) {
                    return Err(format!("aid '{value}': an AID has 5 to 16 bytes"));
                }
                self.aids = Some(aids);
            }
            "cla-style" => {
                self.cla_style = Some(
                    ClaStyle::from_name(value)
                        .ok_or_else(|| format!("cla-style must be 00 or 80, not '{value}'"))?,
                )
            }
            "channel" => {
                self.basic_channel = Some(match value {
                    "logical" => false,
                    "basic" => true,
                    _ => return Err(format!("channel must be logical or basic, not '{value}'")),
                })
            }
            "key-id" | "key-label" => {
                self.key = Some(object(name, value, name.ends_with("label"))?)
            }
            "pub-id" | "pub-label" => {
                self.public = Some(object(name, value, name.ends_with("label"))?)
            }
            "cert-id" | "cert-label" => {
                self.cert = Some(object(name, value, name.ends_with("label"))?)
            }
            "dh-peer-id" => self.dh_peer = Some(object(name, value, false)?),
            "debug-log" => self.debug_log = Some(value.to_string()),
            _ => return Err(format!("unknown attribute '{name}'")),
        }
        Ok(())
    }

    /// openssl.cnf values, then environment overrides.
    pub fn from_sources(
        file: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (name, variable) in ATTRIBUTES {
            if let Some(value) = file.get(*name) {
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

    /// These settings where given, `base` elsewhere.
    pub fn overlay(&self, base: &Settings) -> Settings {
        Settings {
            reader: self.reader.clone().or_else(|| base.reader.clone()),
            modem: self.modem.clone().or_else(|| base.modem.clone()),
            aids: self.aids.clone().or_else(|| base.aids.clone()),
            cla_style: self.cla_style.or(base.cla_style),
            basic_channel: self.basic_channel.or(base.basic_channel),
            key: self.key.clone().or_else(|| base.key.clone()),
            // A URI that names another key without its public half means that key's own.
            public: self.public.clone().or_else(|| {
                if self.key.is_some() {
                    None
                } else {
                    base.public.clone()
                }
            }),
            cert: self.cert.clone().or_else(|| base.cert.clone()),
            dh_peer: self.dh_peer.clone().or_else(|| base.dh_peer.clone()),
            debug_log: self.debug_log.clone().or_else(|| base.debug_log.clone()),
        }
    }

    /// How to address the applet.
    pub fn applet_config(&self) -> AppletConfig {
        let mut config = AppletConfig::default();
        if let Some(aids) = &self.aids {
            config.aids = aids.clone();
        }
        if let Some(style) = self.cla_style {
            config.cla_style = style;
        }
        if self.basic_channel == Some(true) {
            config.channel = ChannelMode::Basic;
        }
        config
    }

    /// Identifies the card connection these settings reach (one connection per distinct value).
    pub fn card_identity(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}",
            self.reader,
            self.modem,
            self.applet_config()
        )
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
    let names: Vec<std::ffi::CString> = ATTRIBUTES
        .iter()
        .map(|(name, _)| std::ffi::CString::new(*name).expect("attribute names have no NUL"))
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
        for (index, (name, _)) in ATTRIBUTES.iter().enumerate() {
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

static DEBUG_LOG: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Opens the debug log named in the settings, if any.
pub fn open_debug_log(settings: &Settings) {
    if let Some(path) = &settings.debug_log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(file) = file {
            *DEBUG_LOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
        }
    }
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

    #[test]
    fn environment_overrides_the_file() {
        let mut file = BTreeMap::new();
        file.insert("key-id".to_string(), "01".to_string());
        file.insert("reader".to_string(), "Virtual".to_string());
        let settings =
            Settings::from_sources(&file, |v| (v == "IOTSAFE_KEY_ID").then(|| "07".to_string()))
                .unwrap();
        assert_eq!(settings.key, Some(ObjectRef::Id(vec![7])));
        assert_eq!(settings.reader.as_deref(), Some("Virtual"));
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
