//! Host side of the GSMA IoT SAFE applet protocol.
//!
//! This module knows nothing of OpenSSL: it speaks APDUs to the applet through a
//! [`transport::Transport`] and returns plain bytes (DER signatures, uncompressed EC points,
//! certificate files).
