//! How APDUs reach the applet.
//!
//! A transport gives exclusive access to one card for the duration of a multi-APDU operation
//! (a [`Link`]), so that a signing session's INIT and UPDATE are never interleaved with another
//! process's commands, and it recovers the connection after the card was reset or re-inserted.

pub mod modem;
pub mod pcsc;

use super::error::Result;

/// What a transport did when asked to open a logical channel with an applet selected on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelOpening {
    /// The transport leaves channels to the session (MANAGE CHANNEL and SELECT, sent through
    /// [`Link::transmit`]): a PC/SC reader, or a modem that offers no channels of its own.
    NotOffered,
    /// The transport opened this logical channel and selected the applet on it (a modem's
    /// `AT+CCHO`): the session must send neither MANAGE CHANNEL nor SELECT on it, and gives it
    /// back with [`Link::close_channel`].
    Opened(u8),
    /// The transport opens channels, but not with this AID (the applet is not on the card,
    /// or the modem will not select it): why, for messages.
    Refused(String),
}

/// Exclusive access to the card, for as long as the link lives.
pub trait Link {
    /// Sends one command APDU and returns the raw response (data and status word).
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>>;

    /// Opens a logical channel with the applet `aid` selected on it, when the transport
    /// manages channels itself. Most do not.
    fn open_channel(&mut self, _aid: &[u8]) -> Result<ChannelOpening> {
        Ok(ChannelOpening::NotOffered)
    }

    /// Closes a channel that [`Link::open_channel`] opened (best effort).
    fn close_channel(&mut self, _channel: u8) {}

    /// True when this link began a new exclusive period on a card other hosts share: they
    /// may have closed or re-purposed our logical channel since the previous link. False
    /// when the exclusive access of the previous operation was kept (see
    /// [`Transport::keep_between_operations`]) or nobody else reaches the card.
    fn newly_acquired(&self) -> bool {
        false
    }
}

/// A connection to one card.
pub trait Transport: Send {
    /// Names the card's place (reader name, serial device) in messages.
    fn name(&self) -> &str;

    /// Starts an exclusive operation. Fails with [`super::Error::CardReset`] or
    /// [`super::Error::CardAbsent`] when the card went away since the last operation.
    fn link(&mut self) -> Result<Box<dyn Link + '_>>;

    /// How APDUs travel, when the transport has a choice worth reporting (which AT commands
    /// a modem is driven with, and why): for `iotsafe info` and the provider's debug log.
    fn route(&self) -> Option<String> {
        None
    }

    /// Re-establishes the connection after a reset or a removal. Logical channels and
    /// sessions opened before are gone afterwards.
    fn recover(&mut self) -> Result<()>;

    /// When `keep` is true, the exclusive access an operation acquired outlives its link, so
    /// that back-to-back operations acquire it once; [`Transport::release`] ends it. A
    /// transport without such access ignores this.
    fn keep_between_operations(&mut self, _keep: bool) {}

    /// Ends an exclusive access kept across operations (nothing when none is kept).
    fn release(&mut self) {}
}
