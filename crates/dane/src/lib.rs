//! DNS identity: DNSSEC-validated TLSA records and the DANE/DANCE verification rules.
//!
//! - [`resolver`]: validated look-ups with a proof state for every answer, cached;
//! - `proof`: the proof state of each response, and what the validator leaves open (proven
//!   insecurity, wildcards);
//! - [`refusal`]: why a server or a device is not authenticated, one type for both;
//! - [`name`]: device names and allowed domains, parsed once (host-name syntax only);
//! - [`tlsa`]: TLSA records, owner names, certificate matching;
//! - [`server`]: server authentication through OpenSSL's own DANE (RFC 6698, 7671, 7672);
//! - [`client`]: device identities (draft-ietf-dance-client-auth);
//! - [`clientid_ext`]: the `dane_clientid` TLS 1.3 extension, device checks inside the handshake;
//! - [`ca_discovery`]: CA certificates a registry publishes as TLSA records at its domain;
//! - [`check`]: the checks behind `iotsafe dane check-server|check-client`, as reports.
//!
//! Nothing here knows about smart cards: a device's key is simply the key in its certificate.

pub mod ca_discovery;
pub mod check;
pub mod client;
pub mod clientid_ext;
pub mod name;
mod ossl;
mod proof;
pub mod refusal;
pub mod resolver;
pub mod server;
pub mod tlsa;
mod wire;
