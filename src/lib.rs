//! iotsafe-dane: DNSSEC-based mutual TLS for unmodified OpenSSL 3 programs, with the device key
//! held in the GSMA IoT SAFE applet of a SIM/eSIM.
//!
//! The crate is layered so that each layer knows only the one below it:
//! - [`iotsafe`]: the host side of the applet protocol (APDUs, TLV, transports); no OpenSSL types.
//! - [`keys`]: card key material as OpenSSL objects.

pub mod iotsafe;
pub mod keys;
pub mod provider;
