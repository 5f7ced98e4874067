//! How APDUs reach the applet.
//!
//! A transport gives exclusive access to one card for the duration of a multi-APDU operation
//! (a [`Link`]), so that a signing session's INIT and UPDATE are never interleaved with another
//! process's commands, and it recovers the connection after the card was reset or re-inserted.

pub mod modem;
pub mod pcsc;

use super::error::Result;

/// Exclusive access to the card, for as long as the link lives.
pub trait Link {
    /// Sends one command APDU and returns the raw response (data and status word).
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>>;
}

/// A connection to one card.
pub trait Transport: Send {
    /// Names the card's place (reader name, serial device) in messages.
    fn name(&self) -> &str;

    /// Starts an exclusive operation. Fails with [`super::Error::CardReset`] or
    /// [`super::Error::CardAbsent`] when the card went away since the last operation.
    fn link(&mut self) -> Result<Box<dyn Link + '_>>;

    /// Re-establishes the connection after a reset or a removal. Logical channels and
    /// sessions opened before are gone afterwards.
    fn recover(&mut self) -> Result<()>;
}
