//! Card keys as OpenSSL objects. Shared by the command-line tool and the provider; it knows the
//! key material's shape (an uncompressed EC point), not where it came from.

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};

pub use iotsafe_card::Curve;

/// OpenSSL's name (NID) of a card curve.
pub fn nid(curve: Curve) -> Nid {
    match curve {
        Curve::P256 => Nid::X9_62_PRIME256V1,
        Curve::BrainpoolP256r1 => Nid::BRAINPOOL_P256R1,
    }
}

/// The public key for an uncompressed point (`04 X Y`) on `curve`; fails when the point is
/// not on the curve.
pub fn public_key_from_point(
    curve: Curve,
    point: &[u8],
) -> Result<PKey<Public>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(nid(curve))?;
    let mut ctx = BigNumContext::new()?;
    let point = EcPoint::from_bytes(&group, point, &mut ctx)?;
    let key = EcKey::from_public_key(&group, &point)?;
    key.check_key()?;
    PKey::from_ec_key(key)
}

/// The uncompressed point of an EC public key (for PUT PUBLIC KEY).
pub fn point_of(key: &PKey<Public>) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let ec = key.ec_key()?;
    let mut ctx = BigNumContext::new()?;
    ec.public_key()
        .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::EcKey;

    #[test]
    fn point_round_trips_and_off_curve_points_fail() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let private = EcKey::generate(&group).unwrap();
        let public =
            PKey::from_ec_key(EcKey::from_public_key(&group, private.public_key()).unwrap())
                .unwrap();
        let point = point_of(&public).unwrap();
        assert_eq!(point.len(), 65);
        let again = public_key_from_point(Curve::P256, &point).unwrap();
        assert!(again.public_eq(&public));
        let mut bad = point.clone();
        bad[64] ^= 1;
        assert!(public_key_from_point(Curve::P256, &bad).is_err());
    }
}
