//! iotsafe-dane: DNSSEC-based mutual TLS for unmodified OpenSSL 3 programs, with the device key
//! held in the GSMA IoT SAFE applet of a SIM/eSIM.
//!
//! The crate is layered so that each layer knows only the one below it:
//! - [`iotsafe`]: the host side of the applet protocol (APDUs, TLV, transports); no OpenSSL types.
//! - [`keys`]: card key material as OpenSSL objects.
//! - [`dane`]: DNSSEC-validated TLSA records and the DANE/DANCE verification rules.
//! - [`capi`]: the C API over [`dane`] (`include/iotsafe_dane.h`).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod capi;
pub mod dane;
#[doc(hidden)]
pub mod fuzzing;
pub mod hex;
pub mod iotsafe;
pub mod keys;
pub mod provider;
