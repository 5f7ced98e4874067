//! Key management "EC" over the key model of [`key`](super::key).
//!
//! Export refuses keys with a private half on the card: OpenSSL 3.0 exports with "all"
//! selected, and a public-only copy in the default provider would then be asked to sign.
//! Refusing makes OpenSSL use this provider's ECDSA/ECDH; comparisons go the other way,
//! through `import`.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;

use super::abi::context::{self, with_object, with_unshared};
use super::abi::dispatch::*;
use super::abi::ffi::*;
use super::abi::params::{Callback, Param, ParamsIn, ParamsOut};
use super::abi::{dispatch_table, guard, guard_in, param_table, reference};
use super::error::{self, Reason};
use super::instance::Instance;
use super::key::Key;
use crate::keys::{self, Curve};

pub fn group_name(curve: Curve) -> &'static str {
    match curve {
        Curve::P256 => "prime256v1",
        Curve::BrainpoolP256r1 => "brainpoolP256r1",
    }
}

fn curve_of_group(name: &str) -> Option<Curve> {
    match name.to_ascii_lowercase().as_str() {
        "prime256v1" | "p-256" | "secp256r1" => Some(Curve::P256),
        "brainpoolp256r1" => Some(Curve::BrainpoolP256r1),
        _ => None,
    }
}

/// Hands a new key to OpenSSL (keymgmt `new`, `load`).
pub fn into_keydata(key: Arc<Key>) -> *mut c_void {
    context::share_out(key)
}

/// Passes a key to OpenSSL by reference: OpenSSL gives the reference to our `load` within
/// the callback (the key is withdrawn when the callback returns).
pub fn offer(key: Key, callback: Callback) -> c_int {
    let instance = key.instance;
    reference::lend(instance, Arc::new(key), |reference| {
        callback.call(&[
            Param::Int(c"type", OSSL_OBJECT_PKEY),
            Param::Utf8(c"data-type", c"EC"),
            Param::Octets(c"reference", reference),
        ])
    })
}

unsafe extern "C" fn new(provctx: *mut c_void) -> *mut c_void {
    // SAFETY: the provctx of this call.
    let instance = unsafe { Instance::from_provctx(provctx) };
    guard_in(instance, std::ptr::null_mut(), || match instance {
        Some(instance) => into_keydata(Arc::new(Key::empty(instance))),
        None => std::ptr::null_mut(),
    })
}

unsafe extern "C" fn free(keydata: *mut c_void) {
    // SAFETY: OpenSSL frees each key data it got from us once.
    unsafe { context::release::<Key>(keydata) }
}

/// A key offered by reference (store, decoder: see [`reference`]). OpenSSL calls this with
/// no provctx, inside the offering call, whose instance must be the key's.
unsafe extern "C" fn load(reference: *const c_void, size: usize) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        // SAFETY: OpenSSL passes the reference's bytes and their size.
        let redeemed =
            unsafe { reference::redeem::<Key>(reference, size, error::current_caller()) };
        match redeemed {
            Ok(key) => into_keydata(key),
            Err(refused) => {
                error::raise(Reason::BadKeyReference, &refused.to_string());
                std::ptr::null_mut()
            }
        }
    })
}

fn has(key: &Key, selection: c_int) -> bool {
    let mut ok = true;
    if selection & SELECT_PRIVATE_KEY != 0 {
        ok &= key.private.is_some();
    }
    if selection & SELECT_PUBLIC_KEY != 0 {
        ok &= !key.point.is_empty();
    }
    ok
}

unsafe extern "C" fn has_entry(keydata: *const c_void, selection: c_int) -> c_int {
    // SAFETY: key data from OpenSSL.
    unsafe { with_object(keydata, 0, |key: &Key| has(key, selection).into()) }
}

unsafe extern "C" fn query_operation_name(operation: c_int) -> *const c_char {
    match operation {
        OSSL_OP_SIGNATURE => c"ECDSA".as_ptr(),
        OSSL_OP_KEYEXCH => c"ECDH".as_ptr(),
        _ => std::ptr::null(),
    }
}

/// Largest DER ECDSA signature for a 256-bit curve.
pub const MAX_SIGNATURE: usize = 72;

const GETTABLE: &[ParamDescriptor] = param_table![
    param(b"bits\0", OSSL_PARAM_INTEGER),
    param(b"security-bits\0", OSSL_PARAM_INTEGER),
    param(b"max-size\0", OSSL_PARAM_INTEGER),
    param(b"group\0", OSSL_PARAM_UTF8_STRING),
    param(b"default-digest\0", OSSL_PARAM_UTF8_STRING),
    param(b"encoded-pub-key\0", OSSL_PARAM_OCTET_STRING),
    param(b"pub\0", OSSL_PARAM_OCTET_STRING),
    param(b"point-format\0", OSSL_PARAM_UTF8_STRING),
];

unsafe extern "C" fn gettable_params(_provctx: *mut c_void) -> *const OSSL_PARAM {
    GETTABLE.as_ptr() as *const OSSL_PARAM
}

fn get_params(key: &Key, out: &mut ParamsOut<'_>) -> bool {
    let mut ok = out.int(c"bits", 256)
        && out.int(c"security-bits", 128)
        && out.int(c"max-size", MAX_SIGNATURE as c_int)
        && out.utf8(c"group", key.group_name())
        && out.utf8(c"default-digest", "SHA256")
        && out.utf8(c"point-format", "uncompressed");
    if !key.point.is_empty() {
        ok = ok && out.octets(c"encoded-pub-key", &key.point) && out.octets(c"pub", &key.point);
    }
    ok
}

unsafe extern "C" fn get_params_entry(keydata: *mut c_void, out: *mut OSSL_PARAM) -> c_int {
    // SAFETY: key data and parameter array from OpenSSL.
    unsafe {
        let mut out = ParamsOut::new(out);
        with_object(keydata, 0, |key: &Key| get_params(key, &mut out).into())
    }
}

fn matches(a: &Key, b: &Key, selection: c_int) -> bool {
    let mut ok = a.curve == b.curve;
    if selection & SELECT_KEYPAIR != 0 {
        ok &= !a.point.is_empty() && a.point == b.point;
    }
    ok
}

unsafe extern "C" fn match_keys(k1: *const c_void, k2: *const c_void, selection: c_int) -> c_int {
    // SAFETY: key data from OpenSSL, both of our keymgmt.
    unsafe {
        let b = context::borrow::<Key>(k2);
        with_object(k1, 0, |a: &Key| {
            let Some(b) = b else { return 0 };
            let matched = matches(a, b, selection);
            if !matched && selection & SELECT_KEYPAIR != 0 {
                report_mismatch(a, b);
            }
            matched.into()
        })
    }
}

/// A card key compared with another public key that is not its own: what OpenSSL does when
/// a certificate and a key are paired (`X509_check_private_key`, `SSL_CTX_check_private_key`,
/// a combined file). OpenSSL's own "key values mismatch" does not say which key; this names
/// the card's.
fn report_mismatch(a: &Key, b: &Key) {
    let Some(private) = a.private.as_ref().or(b.private.as_ref()) else {
        return; // two keys of no card: not a pairing of a certificate with a card key
    };
    error::raise(
        Reason::KeyMismatch,
        &format!(
            "the certificate's public key is not the one of private key {private} on the \
             IoT SAFE applet: the certificate and the key reference belong to different keys \
             (`iotsafe cert` prints this key's certificate)"
        ),
    );
}

const KEY_TYPES: &[ParamDescriptor] = param_table![
    param(b"group\0", OSSL_PARAM_UTF8_STRING),
    param(b"pub\0", OSSL_PARAM_OCTET_STRING),
];

unsafe extern "C" fn key_types(_selection: c_int) -> *const OSSL_PARAM {
    KEY_TYPES.as_ptr() as *const OSSL_PARAM
}

/// Fills a key made by `new` (a public key only: a card key is never imported).
fn import(key: &mut Key, selection: c_int, input: ParamsIn<'_>) -> Option<()> {
    if key.card.is_some() {
        return None;
    }
    if let Some(group) = input.utf8(c"group") {
        key.curve = curve_of_group(&group)?;
    }
    if selection & SELECT_PUBLIC_KEY != 0 {
        let point = input.octets(c"pub")?;
        keys::public_key_from_point(key.curve, &point).ok()?;
        key.point = point;
    }
    Some(())
}

unsafe extern "C" fn import_entry(
    keydata: *mut c_void,
    selection: c_int,
    input: *const OSSL_PARAM,
) -> c_int {
    // SAFETY: a key from `new`, which OpenSSL has not shared yet; parameters from OpenSSL.
    unsafe {
        let input = ParamsIn::new(input);
        with_unshared(keydata, 0, |key: &mut Key| {
            import(key, selection, input).is_some().into()
        })
    }
}

fn export(key: &Key, selection: c_int, callback: Callback) -> c_int {
    // Never a copy of a card key elsewhere (see the module comment); public keys only.
    if key.private.is_some() {
        return 0;
    }
    let group = CString::new(key.group_name()).expect("group names have no NUL");
    let mut params = vec![Param::Utf8(c"group", &group)];
    if selection & SELECT_PUBLIC_KEY != 0 && !key.point.is_empty() {
        params.push(Param::Octets(c"pub", &key.point));
    }
    callback.call(&params)
}

unsafe extern "C" fn export_entry(
    keydata: *mut c_void,
    selection: c_int,
    callback: Option<OSSL_CALLBACK>,
    cbarg: *mut c_void,
) -> c_int {
    // SAFETY: key data and the callback pair of this call.
    unsafe {
        let callback = Callback::new(callback, cbarg);
        with_object(keydata, 0, |key: &Key| match callback {
            Some(callback) => export(key, selection, callback),
            None => 0,
        })
    }
}

pub const FUNCTIONS: &[OSSL_DISPATCH] = dispatch_table![
    keymgmt_new(new),
    keymgmt_free(free),
    keymgmt_load(load),
    keymgmt_has(has_entry),
    keymgmt_get_params(get_params_entry),
    keymgmt_gettable_params(gettable_params),
    keymgmt_match(match_keys),
    keymgmt_import(import_entry),
    keymgmt_import_types(key_types),
    keymgmt_export(export_entry),
    keymgmt_export_types(key_types),
    keymgmt_query_operation_name(query_operation_name),
];

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::bn::BigNumContext;
    use openssl::ec::{EcGroup, EcKey, PointConversionForm};
    use openssl::nid::Nid;

    fn point(nid: Nid) -> Vec<u8> {
        let group = EcGroup::from_curve_name(nid).unwrap();
        let key = EcKey::generate(&group).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        key.public_key()
            .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
            .unwrap()
    }

    /// What the callback of `offer` saw: the reference's bytes and what `load` made of them.
    #[derive(Default)]
    struct Loaded {
        reference: Vec<u8>,
        keydata: Option<*mut c_void>,
    }

    unsafe extern "C" fn load_in_callback(params: *const OSSL_PARAM, arg: *mut c_void) -> c_int {
        // SAFETY: the array `offer` built; `arg` is the test's `Loaded`.
        let (params, loaded) = unsafe { (ParamsIn::new(params), &mut *(arg as *mut Loaded)) };
        assert_eq!(params.int(c"type"), Some(OSSL_OBJECT_PKEY));
        assert_eq!(params.utf8(c"data-type").as_deref(), Some("EC"));
        assert_eq!(params.octets(c"data"), None, "no encoding to decode");
        loaded.reference = params.octets(c"reference").expect("a reference");
        // SAFETY: the reference's bytes, as libcrypto passes them to `load`.
        loaded.keydata = Some(unsafe {
            load(
                loaded.reference.as_ptr() as *const c_void,
                loaded.reference.len(),
            )
        });
        1
    }

    fn errors() -> String {
        let errors = openssl::error::ErrorStack::get();
        let lines: Vec<String> = errors.errors().iter().map(|e| e.to_string()).collect();
        lines.join("\n")
    }

    #[test]
    fn an_offered_key_loads_by_reference_once_on_offer_only() {
        let mut key = Key::empty(Instance::for_tests());
        key.point = point(Nid::X9_62_PRIME256V1);
        let expected_point = key.point.clone();
        let mut loaded = Loaded::default();
        // SAFETY: a callback and an argument that outlives the call.
        let callback = unsafe {
            Callback::new(
                Some(load_in_callback),
                &mut loaded as *mut Loaded as *mut c_void,
            )
        }
        .unwrap();
        assert_eq!(offer(key, callback), 1);
        let keydata = loaded.keydata.expect("the callback ran");
        assert!(!keydata.is_null(), "loaded while on offer: {}", errors());
        // SAFETY: key data from `load`, released once below.
        unsafe {
            assert_eq!(
                context::borrow::<Key>(keydata).unwrap().point,
                expected_point
            );
            free(keydata);
        }

        // The same bytes after the offer, a shorter copy, NULL: refused with an error.
        errors();
        let stale = &loaded.reference;
        // SAFETY: live buffers of the sizes given (or NULL).
        unsafe {
            assert!(load(stale.as_ptr() as *const c_void, stale.len()).is_null());
            assert!(errors().contains("not on offer"));
            assert!(load(stale.as_ptr() as *const c_void, 8).is_null());
            assert!(errors().contains("of 8 bytes"));
            assert!(load(std::ptr::null(), reference::SIZE).is_null());
            assert!(errors().contains("no object reference (NULL)"));
        }
    }

    #[test]
    fn group_names_match_the_card_curves() {
        for curve in [Curve::P256, Curve::BrainpoolP256r1] {
            assert_eq!(curve_of_group(group_name(curve)), Some(curve));
        }
        assert_eq!(curve_of_group("P-256"), Some(Curve::P256));
        assert_eq!(curve_of_group("secp384r1"), None);
    }
}
