//! DNS identity: DNSSEC-validated TLSA records and the DANE/DANCE verification rules.
//!
//! - [`resolver`]: validated look-ups with a proof state for every answer, cached;
//! - [`tlsa`]: TLSA records, owner names, certificate matching;
//! - [`server`]: server authentication through OpenSSL's own DANE (RFC 6698, 7671, 7672);
//! - [`client`]: device identities (draft-ietf-dance-client-auth).
//!
//! Nothing here knows about smart cards: a device's key is simply the key in its certificate.

pub mod cli;
pub mod client;
pub mod clientid_ext;
mod ossl;
pub mod resolver;
pub mod server;
pub mod tlsa;
mod wire;
