//! Host side of the GSMA IoT SAFE applet protocol.
//!
//! This module knows nothing of OpenSSL: it speaks APDUs to the applet through a
//! [`transport::Transport`] and returns plain bytes (DER signatures, uncompressed EC points,
//! certificate files).

pub mod apdu;
pub mod applet;
pub mod ecdsa;
pub mod error;
pub mod objects;
pub mod target;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tlv;
pub mod transport;

pub use applet::{Applet, AppletConfig, ChannelMode, ClaStyle, GeneratedKey};
pub use ecdsa::HashAlg;
pub use error::{Error, Result};
pub use objects::{AppInfo, Curve, ObjectInfo, ObjectKind, ObjectRef, PublicKey};
pub use target::Target;
