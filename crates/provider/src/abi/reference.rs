//! Objects lent to libcrypto by reference: a store or decoder passes an object (a card key)
//! as `OSSL_OBJECT_PARAM_REFERENCE`, and libcrypto hands those bytes to our keymgmt's `load`
//! within the same callback, on the same thread.
//!
//! The bytes are no pointer: they name an entry of this thread's list of objects on offer,
//! which holds the object only while the offering call runs. So a reference from another
//! provider, a forged or stale one, one of another provider instance or another thread is
//! refused with an error instead of being dereferenced.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::super::instance::Instance;

/// The bytes of a reference. Its size differs from a bare pointer's, so that another
/// provider's `load` given it by mistake refuses it too.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Reference {
    magic: u64,
    /// The offering instance (an identifier, never dereferenced).
    instance: u64,
    serial: u64,
}

const MAGIC: u64 = 0x696f_7473_6166_6532; // "iotsafe2"

/// The size of a reference in bytes.
pub const SIZE: usize = std::mem::size_of::<Reference>();

struct Offer {
    reference: Reference,
    object: Arc<dyn Any + Send + Sync>,
}

thread_local! {
    /// The objects this thread offers right now (innermost last).
    static OFFERS: RefCell<Vec<Offer>> = const { RefCell::new(Vec::new()) };
}

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// Why a reference was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// NULL instead of a reference.
    Null,
    /// Not the size of our references.
    BadSize(usize),
    /// Not one of ours on offer on this thread (unknown, forged, or already withdrawn).
    Unknown,
    /// Offered by another provider instance than the one whose call is running.
    OtherInstance,
    /// An object of another type than asked for.
    WrongType,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Null => f.write_str("no object reference (NULL)"),
            Refused::BadSize(size) => write!(
                f,
                "an object reference of {size} bytes (this provider's have {SIZE})"
            ),
            Refused::Unknown => f.write_str("an object reference this provider has not on offer"),
            Refused::OtherInstance => {
                f.write_str("an object reference of another instance of this provider")
            }
            Refused::WrongType => f.write_str("an object reference to another kind of object"),
        }
    }
}

/// Offers `object` by reference while `offer` runs (the callback that gives the reference's
/// bytes to libcrypto); withdraws it afterwards, also on a panic. Whoever loaded it holds
/// references of their own.
pub fn lend<T: Any + Send + Sync, R>(
    instance: Instance,
    object: Arc<T>,
    offer: impl FnOnce(&[u8]) -> R,
) -> R {
    let reference = Reference {
        magic: MAGIC,
        instance: instance.id() as u64,
        serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
    };
    OFFERS.with(|offers| offers.borrow_mut().push(Offer { reference, object }));
    struct Withdraw(Reference);
    impl Drop for Withdraw {
        fn drop(&mut self) {
            OFFERS.with(|offers| offers.borrow_mut().retain(|o| o.reference != self.0));
        }
    }
    let _withdraw = Withdraw(reference);
    offer(as_bytes(&reference))
}

fn as_bytes(reference: &Reference) -> &[u8] {
    // SAFETY: a repr(C) struct of three u64, hence without padding (asserted below): all
    // of its bytes are initialised.
    unsafe { std::slice::from_raw_parts(reference as *const Reference as *const u8, SIZE) }
}

/// The object a reference names, for `load`. `caller` is the instance whose call is running
/// on this thread (the one that offered it, when the reference is genuine).
///
/// # Safety
/// `reference` is NULL or points to `size` readable bytes.
pub unsafe fn redeem<T: Any + Send + Sync>(
    reference: *const std::ffi::c_void,
    size: usize,
    caller: Option<Instance>,
) -> Result<Arc<T>, Refused> {
    if reference.is_null() {
        return Err(Refused::Null);
    }
    if size != SIZE {
        return Err(Refused::BadSize(size));
    }
    // SAFETY: `size` readable bytes (the function's contract), which is the struct's size;
    // read unaligned, as libcrypto's buffer may be.
    let reference = unsafe { std::ptr::read_unaligned(reference as *const Reference) };
    if reference.magic != MAGIC {
        return Err(Refused::Unknown);
    }
    let object = OFFERS.with(|offers| {
        offers
            .borrow()
            .iter()
            .find(|o| o.reference == reference)
            .map(|o| o.object.clone())
    });
    let object = object.ok_or(Refused::Unknown)?;
    if caller.is_some_and(|caller| caller.id() as u64 != reference.instance) {
        return Err(Refused::OtherInstance);
    }
    object.downcast::<T>().map_err(|_| Refused::WrongType)
}

// A reference has no padding bytes (they would be uninitialised when read as bytes).
const _: () = assert!(SIZE == 3 * 8);

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_void;

    fn redeem_bytes<T: Any + Send + Sync>(
        bytes: &[u8],
        caller: Option<Instance>,
    ) -> Result<Arc<T>, Refused> {
        // SAFETY: a live slice of that length.
        unsafe { redeem::<T>(bytes.as_ptr() as *const c_void, bytes.len(), caller) }
    }

    #[test]
    fn a_reference_is_good_only_while_on_offer() {
        let instance = Instance::for_tests();
        let kept = lend(instance, Arc::new(42u32), |bytes| {
            let object = redeem_bytes::<u32>(bytes, Some(instance)).expect("on offer");
            assert_eq!(*object, 42);
            // Loading twice gives two references, each of its own.
            assert!(redeem_bytes::<u32>(bytes, None).is_ok());
            (object, bytes.to_vec())
        });
        let (object, bytes) = kept;
        assert_eq!(*object, 42, "a loaded object outlives the offer");
        assert_eq!(
            redeem_bytes::<u32>(&bytes, Some(instance)).unwrap_err(),
            Refused::Unknown,
            "withdrawn after the offer"
        );
    }

    #[test]
    fn bad_sizes_and_forgeries_are_refused() {
        let instance = Instance::for_tests();
        lend(instance, Arc::new(1u8), |bytes| {
            assert_eq!(
                redeem_bytes::<u8>(&bytes[..8], None).unwrap_err(),
                Refused::BadSize(8)
            );
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert_eq!(
                redeem_bytes::<u8>(&longer, None).unwrap_err(),
                Refused::BadSize(SIZE + 1)
            );
            // SAFETY: NULL is refused before anything is read.
            let null = unsafe { redeem::<u8>(std::ptr::null(), SIZE, None) };
            assert_eq!(null.unwrap_err(), Refused::Null);
            let mut forged = bytes.to_vec();
            forged[SIZE - 1] ^= 0x55; // another serial
            assert_eq!(
                redeem_bytes::<u8>(&forged, None).unwrap_err(),
                Refused::Unknown
            );
            let mut other_magic = bytes.to_vec();
            other_magic[0] ^= 1;
            assert_eq!(
                redeem_bytes::<u8>(&other_magic, None).unwrap_err(),
                Refused::Unknown
            );
            assert_eq!(
                redeem_bytes::<u32>(bytes, None).unwrap_err(),
                Refused::WrongType
            );
        });
    }

    #[test]
    fn another_instance_or_thread_cannot_redeem() {
        let offering = Instance::for_tests();
        let other = Instance::for_tests();
        lend(offering, Arc::new(5u16), |bytes| {
            assert_eq!(
                redeem_bytes::<u16>(bytes, Some(other)).unwrap_err(),
                Refused::OtherInstance
            );
            let copy = bytes.to_vec();
            let elsewhere = std::thread::spawn(move || redeem_bytes::<u16>(&copy, None).err());
            assert_eq!(elsewhere.join().unwrap(), Some(Refused::Unknown));
        });
    }

    #[test]
    fn a_panicking_offer_withdraws_the_reference() {
        let instance = Instance::for_tests();
        let mut bytes = Vec::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lend(instance, Arc::new(3i64), |b| {
                bytes = b.to_vec();
                panic!("offer failed")
            })
        }));
        assert!(result.is_err());
        assert_eq!(
            redeem_bytes::<i64>(&bytes, None).unwrap_err(),
            Refused::Unknown
        );
    }
}
