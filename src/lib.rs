//! iotsafe-dane: DNSSEC-based mutual TLS for unmodified OpenSSL 3 programs, with the device key
//! held in the GSMA IoT SAFE applet of a SIM/eSIM.
//!
//! This crate is the core library users install, `libiotsafe_dane.so`: the OpenSSL provider
//! `iotsafe` (its `OSSL_provider_init`) and the C API (`include/iotsafe_dane.h`) in one object,
//! so that a process holds one resolver cache and one card connection whoever loads it. The
//! layers are crates of their own, so that Cargo, not discipline, keeps each to what it may know:
//! - [`iotsafe`] (`crates/card`): the host side of the applet protocol (APDUs, TLV, PC/SC and
//!   modem transports); no OpenSSL types;
//! - [`dane`] (`crates/dane`): DNSSEC-validated TLSA records and the DANE/DANCE rules; no cards;
//! - [`provider`] (`crates/provider`): the OpenSSL 3 provider over the card layer; no DNS;
//! - [`capi`]: the C API over [`dane`], the only crate whose items C sees.
//!
//! The re-exports below keep one path per item for Rust callers (tests, benches, tools).

pub mod capi;
#[doc(hidden)]
pub mod fuzzing;

pub use dane;
pub use iotsafe_card as iotsafe;
pub use iotsafe_hex as hex;
pub use iotsafe_provider as provider;
pub use iotsafe_provider::keys;
