//! The key model: what stands behind a key object of our key management. A key whose private
//! half lives on the applet, or a public key imported for comparison (e.g. a certificate's
//! key in `SSL_CTX_check_private_key`).
//!
//! OpenSSL holds keys as `Arc<Key>` (see [`abi::context`](super::abi::context)): signature and
//! key exchange contexts take their own reference, so a key freed by OpenSSL while a context
//! still uses it stays alive.

use std::sync::Arc;

use super::abi::Made;
use super::card::{self, Card};
use super::error::{self, Reason};
use super::instance::Instance;
use super::keymgmt::group_name;
use crate::keys::{self, Curve};
use iotsafe_card::{ObjectRef, PublicKey, Target};

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

impl Made for Key {
    fn instance(&self) -> Instance {
        self.instance
    }
}

impl Key {
    /// A key with nothing in it yet (keymgmt `new`, before `import`).
    pub fn empty(instance: Instance) -> Key {
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
        let fail = |e: iotsafe_card::Error| (error::reason_of(&e), e.to_string());
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
