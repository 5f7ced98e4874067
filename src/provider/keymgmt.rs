//! Key management "EC": a key whose private half lives on the applet (or a public key
//! imported for comparison, e.g. a certificate's key in `SSL_CTX_check_private_key`).
//!
//! The key data is an `Arc<Key>` handed to OpenSSL as a raw pointer: signature and key
//! exchange contexts take their own reference, so a key freed by OpenSSL while a context
//! still uses it stays alive.
//!
//! Export refuses keys with a private half on the card: OpenSSL 3.0 exports with "all"
//! selected, and a public-only copy in the default provider would then be asked to sign.
//! Refusing makes OpenSSL use this provider's ECDSA/ECDH; comparisons go the other way,
//! through `import`.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::card::{self, Card};
use super::error::{self, Reason};
use super::ffi::*;
use super::{dispatch, dispatch_end, guard, guard_in, params, Instance};
use crate::iotsafe::{ObjectRef, PublicKey, Target};
use crate::keys::{self, Curve};

pub struct Key {
    /// The provider instance the key was made through: OpenSSL passes key management
    /// functions no provctx, and errors about the key go through this instance.
    pub instance: Instance,
    /// The card and private key, for keys on the card.
    pub card: Option<Arc<Card>>,
    pub private: Option<ObjectRef>,
    pub dh_peer: ObjectRef,
    pub curve: Curve,
    /// Uncompressed point `04 X Y`; empty until imported for a new key.
    pub point: Vec<u8>,
}

/// The public key slot that takes an ECDH peer's point, unless configured.
const DEFAULT_DH_PEER: u8 = 0x10;

impl Key {
    fn empty(instance: Instance) -> Key {
        Key {
            instance,
            card: None,
            private: None,
            dh_peer: ObjectRef::Id(vec![DEFAULT_DH_PEER]),
            curve: Curve::P256,
            point: Vec::new(),
        }
    }

    /// The key the target names, with its public half (curve and point) read from the card
    /// (once per process).
    pub fn from_card(instance: Instance, target: &Target) -> Result<Key, (Reason, String)> {
        let card = card::card_for(target);
        let fail = |e: crate::iotsafe::Error| (error::reason_of(&e), e.to_string());
        let private = match &target.key {
            Some(key) => key.clone(),
            None => card.default_key().map_err(fail)?,
        };
        let public = target.public.clone().unwrap_or_else(|| private.clone());
        let PublicKey { curve, point } = card.public_key(&public).map_err(fail)?;
        keys::public_key_from_point(curve, &point).map_err(|e| {
            (
                Reason::CardError,
                format!(
                    "public key {public} on the card is not a point on {}: {e}",
                    curve.name()
                ),
            )
        })?;
        Ok(Key {
            instance,
            card: Some(card),
            private: Some(private),
            dh_peer: target
                .dh_peer
                .clone()
                .unwrap_or(ObjectRef::Id(vec![DEFAULT_DH_PEER])),
            curve,
            point,
        })
    }

    /// The public half as an OpenSSL key of the default provider.
    pub fn public_pkey(&self) -> Option<openssl::pkey::PKey<openssl::pkey::Public>> {
        keys::public_key_from_point(self.curve, &self.point).ok()
    }

    pub fn group_name(&self) -> &'static str {
        group_name(self.curve)
    }
}

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

/// Hands a key to OpenSSL.
pub fn into_keydata(key: Key) -> *mut c_void {
    Arc::into_raw(Arc::new(key)) as *mut c_void
}

/// Borrows the key behind OpenSSL's key data.
///
/// # Safety
/// `keydata` is NULL or came from [`into_keydata`] and was not freed.
pub unsafe fn borrow<'a>(keydata: *const c_void) -> Option<&'a Key> {
    (keydata as *const Key).as_ref()
}

/// The instance a key was made through, for the functions OpenSSL calls without a provctx.
///
/// # Safety
/// As [`borrow`].
unsafe fn instance_of(keydata: *const c_void) -> Option<Instance> {
    borrow(keydata).map(|key| key.instance)
}

/// A reference of our own to the key behind OpenSSL's key data.
///
/// # Safety
/// As [`borrow`].
pub unsafe fn share(keydata: *const c_void) -> Option<Arc<Key>> {
    if keydata.is_null() {
        return None;
    }
    Arc::increment_strong_count(keydata as *const Key);
    Some(Arc::from_raw(keydata as *const Key))
}

/// The object reference a decoder passes to `load`: a magic number then the key data pointer.
/// Its size differs from a bare pointer, so another provider's `load` given it by mistake
/// refuses it instead of dereferencing it.
#[repr(C)]
pub struct Reference {
    pub magic: u64,
    pub keydata: *mut c_void,
}

pub const REFERENCE_MAGIC: u64 = 0x696f_7473_6166_6531; // "iotsafe1"

unsafe extern "C" fn new(provctx: *mut c_void) -> *mut c_void {
    // SAFETY: the provctx of this call.
    let instance = unsafe { Instance::from_provctx(provctx) };
    guard_in(instance, std::ptr::null_mut(), || match instance {
        Some(instance) => into_keydata(Key::empty(instance)),
        None => std::ptr::null_mut(),
    })
}

unsafe extern "C" fn free(keydata: *mut c_void) {
    guard_in(instance_of(keydata), (), || {
        if !keydata.is_null() {
            // SAFETY: OpenSSL frees each key data it got from us once.
            drop(unsafe { Arc::from_raw(keydata as *const Key) });
        }
    })
}

unsafe extern "C" fn load(reference: *const c_void, size: usize) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        if reference.is_null() || size != std::mem::size_of::<Reference>() {
            return std::ptr::null_mut();
        }
        // SAFETY: a reference of our size is one of ours (decoder.rs); we take the pointer
        // out of it so that the decoder does not free the key afterwards. The key carries
        // the instance it was decoded through.
        unsafe {
            let reference = reference as *mut Reference;
            if (*reference).magic != REFERENCE_MAGIC {
                return std::ptr::null_mut();
            }
            std::mem::replace(&mut (*reference).keydata, std::ptr::null_mut())
        }
    })
}

unsafe extern "C" fn has(keydata: *const c_void, selection: c_int) -> c_int {
    guard_in(instance_of(keydata), 0, || {
        // SAFETY: key data from OpenSSL.
        let Some(key) = (unsafe { borrow(keydata) }) else {
            return 0;
        };
        let mut ok = true;
        if selection & SELECT_PRIVATE_KEY != 0 {
            ok &= key.private.is_some();
        }
        if selection & SELECT_PUBLIC_KEY != 0 {
            ok &= !key.point.is_empty();
        }
        ok.into()
    })
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

static GETTABLE: [ParamDescriptor; 9] = [
    param(b"bits\0", OSSL_PARAM_INTEGER),
    param(b"security-bits\0", OSSL_PARAM_INTEGER),
    param(b"max-size\0", OSSL_PARAM_INTEGER),
    param(b"group\0", OSSL_PARAM_UTF8_STRING),
    param(b"default-digest\0", OSSL_PARAM_UTF8_STRING),
    param(b"encoded-pub-key\0", OSSL_PARAM_OCTET_STRING),
    param(b"pub\0", OSSL_PARAM_OCTET_STRING),
    param(b"point-format\0", OSSL_PARAM_UTF8_STRING),
    PARAM_END,
];

unsafe extern "C" fn gettable_params(_provctx: *mut c_void) -> *const OSSL_PARAM {
    GETTABLE.as_ptr() as *const OSSL_PARAM
}

unsafe extern "C" fn get_params(keydata: *mut c_void, out: *mut OSSL_PARAM) -> c_int {
    guard_in(instance_of(keydata), 0, || {
        // SAFETY: key data and parameter array from OpenSSL.
        unsafe {
            let Some(key) = borrow(keydata) else {
                return 0;
            };
            let mut ok = params::set_int(out, c"bits", 256)
                && params::set_int(out, c"security-bits", 128)
                && params::set_int(out, c"max-size", MAX_SIGNATURE as c_int)
                && params::set_utf8(out, c"group", key.group_name())
                && params::set_utf8(out, c"default-digest", "SHA256")
                && params::set_utf8(out, c"point-format", "uncompressed");
            if !key.point.is_empty() {
                ok = ok
                    && params::set_octets(out, c"encoded-pub-key", &key.point)
                    && params::set_octets(out, c"pub", &key.point);
            }
            ok.into()
        }
    })
}

unsafe extern "C" fn match_keys(k1: *const c_void, k2: *const c_void, selection: c_int) -> c_int {
    guard_in(instance_of(k1), 0, || {
        // SAFETY: key data from OpenSSL.
        let (Some(a), Some(b)) = (unsafe { borrow(k1) }, unsafe { borrow(k2) }) else {
            return 0;
        };
        let mut ok = a.curve == b.curve;
        if selection & SELECT_KEYPAIR != 0 {
            ok &= !a.point.is_empty() && a.point == b.point;
        }
        ok.into()
    })
}

static KEY_TYPES: [ParamDescriptor; 3] = [
    param(b"group\0", OSSL_PARAM_UTF8_STRING),
    param(b"pub\0", OSSL_PARAM_OCTET_STRING),
    PARAM_END,
];

unsafe extern "C" fn key_types(_selection: c_int) -> *const OSSL_PARAM {
    KEY_TYPES.as_ptr() as *const OSSL_PARAM
}

unsafe extern "C" fn import(
    keydata: *mut c_void,
    selection: c_int,
    input: *const OSSL_PARAM,
) -> c_int {
    guard_in(instance_of(keydata), 0, || {
        if keydata.is_null() {
            return 0;
        }
        // SAFETY: a key from `new`, which OpenSSL has not shared yet; parameters from OpenSSL.
        unsafe {
            let mut shared = Arc::from_raw(keydata as *const Key);
            let result = (|| {
                let key = Arc::get_mut(&mut shared)?;
                if key.card.is_some() {
                    return None;
                }
                if let Some(group) = params::get_utf8(input, c"group") {
                    key.curve = curve_of_group(&group)?;
                }
                if selection & SELECT_PUBLIC_KEY != 0 {
                    let point = params::get_octets(input, c"pub")?;
                    keys::public_key_from_point(key.curve, &point).ok()?;
                    key.point = point;
                }
                Some(())
            })();
            let _ = Arc::into_raw(shared);
            result.is_some().into()
        }
    })
}

unsafe extern "C" fn export(
    keydata: *mut c_void,
    selection: c_int,
    callback: Option<OSSL_CALLBACK>,
    cbarg: *mut c_void,
) -> c_int {
    guard_in(instance_of(keydata), 0, || {
        // SAFETY: key data from OpenSSL.
        let Some(key) = (unsafe { borrow(keydata) }) else {
            return 0;
        };
        let Some(callback) = callback else { return 0 };
        // Never a copy of a card key elsewhere (see the module comment); public keys only.
        if key.private.is_some() {
            return 0;
        }
        let group = std::ffi::CString::new(key.group_name()).expect("no NUL");
        let mut point = key.point.clone();
        // SAFETY: the parameters point at locals that outlive the callback.
        unsafe {
            let mut out = vec![OSSL_PARAM_construct_utf8_string(
                c"group".as_ptr(),
                group.as_ptr() as *mut c_char,
                0,
            )];
            if selection & SELECT_PUBLIC_KEY != 0 && !point.is_empty() {
                out.push(openssl_sys::OSSL_PARAM_construct_octet_string(
                    c"pub".as_ptr(),
                    point.as_mut_ptr() as *mut c_void,
                    point.len(),
                ));
            }
            out.push(openssl_sys::OSSL_PARAM_construct_end());
            callback(out.as_ptr(), cbarg)
        }
    })
}

pub static FUNCTIONS: [OSSL_DISPATCH; 14] = [
    dispatch!(OSSL_FUNC_KEYMGMT_NEW, new),
    dispatch!(OSSL_FUNC_KEYMGMT_FREE, free),
    dispatch!(OSSL_FUNC_KEYMGMT_LOAD, load),
    dispatch!(OSSL_FUNC_KEYMGMT_HAS, has),
    dispatch!(OSSL_FUNC_KEYMGMT_GET_PARAMS, get_params),
    dispatch!(OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, gettable_params),
    dispatch!(OSSL_FUNC_KEYMGMT_MATCH, match_keys),
    dispatch!(OSSL_FUNC_KEYMGMT_IMPORT, import),
    dispatch!(OSSL_FUNC_KEYMGMT_IMPORT_TYPES, key_types),
    dispatch!(OSSL_FUNC_KEYMGMT_EXPORT, export),
    dispatch!(OSSL_FUNC_KEYMGMT_EXPORT_TYPES, key_types),
    dispatch!(OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, query_operation_name),
    dispatch_end!(),
    dispatch_end!(),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_match_the_card_curves() {
        for curve in [Curve::P256, Curve::BrainpoolP256r1] {
            assert_eq!(curve_of_group(group_name(curve)), Some(curve));
        }
        assert_eq!(curve_of_group("P-256"), Some(Curve::P256));
        assert_eq!(curve_of_group("secp384r1"), None);
    }
}
