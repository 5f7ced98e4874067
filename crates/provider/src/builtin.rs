//! The provider inside the program that links this crate, for tools that must sign with the
//! card key without depending on the user's openssl.cnf (`iotsafe enroll` signing a CSR): a
//! library context of the program's own, in which this provider is registered as a built-in
//! beside OpenSSL's default provider. The key is decoded from its key-reference text and signs
//! through the provider's decoders, key management and signature operations, as in any OpenSSL
//! program that loads the module.

use std::sync::Mutex;

use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private, Public};
use openssl::x509::X509Req;

use crate::abi::builtin::BuiltinContext;

/// Longest key-reference text accepted (a reference is a few hundred bytes).
const MAX_KEYREF_LEN: usize = 64 * 1024;

/// Settings the program gives its built-in provider, by the name of their environment
/// variable (`IOTSAFE_MODEM`): read when an instance initialises, before the environment. The
/// provider loaded as a module from openssl.cnf is another copy of this code and never sees
/// them.
static PROGRAM_SETTINGS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// The program's value of the setting whose environment variable is `name`.
pub(crate) fn program_setting(name: &str) -> Option<String> {
    let settings = PROGRAM_SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    settings
        .iter()
        .find(|(setting, _)| setting == name)
        .map(|(_, value)| value.clone())
}

/// A library context with the built-in provider and OpenSSL's default provider.
pub struct BuiltinProvider {
    context: BuiltinContext,
}

/// A card key decoded in a [`BuiltinProvider`]'s context; it cannot outlive the context.
pub struct CardKey<'p> {
    key: PKey<Private>,
    provider: &'p BuiltinProvider,
}

impl BuiltinProvider {
    /// Loads the provider with `settings` (environment variable name, value) taking the place
    /// of the environment's: the program's own options, such as the modem its user named on
    /// its command line (a key reference may only name the configured modem).
    pub fn load(settings: &[(&str, &str)]) -> Result<BuiltinProvider, String> {
        *PROGRAM_SETTINGS.lock().unwrap_or_else(|e| e.into_inner()) = settings
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let name = c"iotsafe";
        BuiltinContext::new(name)
            .map(|context| BuiltinProvider { context })
            .map_err(|e| openssl_failure("cannot load the built-in iotsafe provider", e))
    }

    /// The card key a key reference (PEM text, as `iotsafe keyref` writes it) names.
    pub fn key(&self, keyref_pem: &str) -> Result<CardKey<'_>, String> {
        if keyref_pem.len() > MAX_KEYREF_LEN {
            return Err(format!(
                "key reference of {} bytes (at most {MAX_KEYREF_LEN})",
                keyref_pem.len()
            ));
        }
        let key = self
            .context
            .decode_private_key(keyref_pem.as_bytes())
            .map_err(|e| openssl_failure("the card key does not load through the provider", e))?;
        Ok(CardKey {
            key,
            provider: self,
        })
    }
}

impl CardKey<'_> {
    /// The public half, as the provider's encoder gives it (a key of OpenSSL's default
    /// provider, usable anywhere).
    pub fn public_key(&self) -> Result<PKey<Public>, String> {
        self.key
            .public_key_to_der()
            .and_then(|der| PKey::public_key_from_der(&der))
            .map_err(|e| openssl_failure("the card key's public key", e))
    }

    /// `request` signed with the card key (ECDSA with SHA-256: the card's curves are 256-bit).
    pub fn sign_request(&self, request: X509Req) -> Result<X509Req, String> {
        self.provider
            .context
            .sign_request(request, &self.key, c"SHA256")
            .map_err(|e| openssl_failure("signing the request with the card key", e))
    }
}

/// `what` failed, with OpenSSL's reasons (the provider's first, as it raised them).
fn openssl_failure(what: &str, stack: ErrorStack) -> String {
    let reasons: Vec<String> = stack
        .errors()
        .iter()
        .map(|e| match (e.reason(), e.data()) {
            (Some(reason), Some(data)) => format!("{reason}: {data}"),
            (Some(reason), None) => reason.to_string(),
            (None, Some(data)) => data.to_string(),
            (None, None) => format!("error {:08X}", e.code()),
        })
        .collect();
    if reasons.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {}", reasons.join("; "))
    }
}
