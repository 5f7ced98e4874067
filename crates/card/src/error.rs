//! Errors of the host stack.
//!
//! Every error names what was asked of the card (the object, the command) and, where the card
//! answered, the status word, so that a user reading one line knows what went wrong and where.

use std::fmt;

/// A status word (SW1 SW2) returned by the card.
pub type StatusWord = u16;

/// What the ISO 7816-4 / IoT SAFE status words mean, in words a user understands.
pub fn status_meaning(sw: StatusWord) -> &'static str {
    match sw {
        0x9000 => "success",
        0x6300 => "more data available",
        0x6700 => "wrong length",
        0x6981 => "command incompatible with the file structure",
        0x6982 => "security status not satisfied",
        0x6984 | 0x6989 | 0x63CF => "the applet is in a remote-administration state",
        0x6985 => "conditions of use not satisfied",
        0x6A80 => "incorrect data",
        0x6A82 => "not found",
        0x6A84 => "not enough memory on the applet",
        0x6A86 => "incorrect parameters P1/P2",
        0x6D00 => "instruction not supported (or the applet is not selected)",
        0x6D01 => "signature mismatch",
        0x6E00 => "class not supported",
        0x6F00 => "unknown error in the applet",
        sw if sw >> 8 == 0x61 => "response bytes still available",
        sw if sw >> 8 == 0x6C => "wrong expected length",
        _ => "unknown status word",
    }
}

/// Errors of the IoT SAFE host stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The object (key, file) named in a command does not exist on the applet.
    NotFound { what: String, sw: StatusWord },
    /// The applet refused a command with a status word other than "not found".
    Refused { what: String, sw: StatusWord },
    /// The card's answer does not have the structure the protocol prescribes.
    Malformed { what: String, reason: String },
    /// No reader (matching the filter) is known to PC/SC.
    NoReader(String),
    /// The modem's AT port given cannot be used (absent, not a terminal).
    NoModem(String),
    /// No card in the reader, or the card was pulled out.
    CardAbsent { reader: String },
    /// The card's transport stopped answering (a modem that hung up or timed out).
    Unresponsive { reader: String, detail: String },
    /// The card was reset (by us, another process, or the reader); channels and sessions are gone.
    CardReset { reader: String },
    /// None of the configured AIDs could be selected.
    NoApplet(String),
    /// The transport itself failed (PC/SC daemon, serial line, ...).
    Transport(String),
    /// The request cannot be expressed in the protocol (bad argument).
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Builds the error for a status word that ended a command.
    pub fn from_status(what: impl Into<String>, sw: StatusWord) -> Self {
        let what = what.into();
        if sw == 0x6A82 {
            Error::NotFound { what, sw }
        } else {
            Error::Refused { what, sw }
        }
    }

    pub fn malformed(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// True when the card went away or was reset: the operation may be retried once after the
    /// transport has recovered and the applet has been selected again.
    pub fn is_connection_loss(&self) -> bool {
        matches!(
            self,
            Error::CardAbsent { .. } | Error::CardReset { .. } | Error::Unresponsive { .. }
        )
    }

    /// True when the card could not be reached at all (as opposed to a card that answered
    /// with a refusal): worth a new connection.
    pub fn is_transport_failure(&self) -> bool {
        self.is_connection_loss()
            || matches!(
                self,
                Error::Transport(_) | Error::NoReader(_) | Error::NoModem(_)
            )
    }

    /// The status word, when the card answered with one.
    pub fn status_word(&self) -> Option<StatusWord> {
        match self {
            Error::NotFound { sw, .. } | Error::Refused { sw, .. } => Some(*sw),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { what, sw } => {
                write!(f, "{what} not found on the applet (SW {sw:04X})")
            }
            Error::Refused { what, sw } => {
                write!(
                    f,
                    "{what} refused by the applet: {} (SW {sw:04X})",
                    status_meaning(*sw)
                )
            }
            Error::Malformed { what, reason } => write!(f, "malformed answer to {what}: {reason}"),
            Error::NoReader(detail) => write!(f, "no smart-card reader: {detail}"),
            Error::NoModem(detail) => write!(f, "no modem: {detail}"),
            Error::CardAbsent { reader } => write!(f, "no card in reader '{reader}' (removed?)"),
            Error::Unresponsive { reader, detail } => {
                write!(f, "the card behind '{reader}' is unreachable: {detail}")
            }
            Error::CardReset { reader } => write!(f, "the card in reader '{reader}' was reset"),
            Error::NoApplet(detail) => write!(f, "IoT SAFE applet not found: {detail}"),
            Error::Transport(detail) => write!(f, "card transport failed: {detail}"),
            Error::Invalid(detail) => write!(f, "invalid request: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_object_and_status_word() {
        let e = Error::from_status("key id 01", 0x6A82);
        assert_eq!(e.to_string(), "key id 01 not found on the applet (SW 6A82)");
    }

    #[test]
    fn refusal_explains_the_status_word() {
        let e = Error::from_status("COMPUTE SIGNATURE UPDATE", 0x6985);
        assert_eq!(
            e.to_string(),
            "COMPUTE SIGNATURE UPDATE refused by the applet: conditions of use not satisfied (SW 6985)"
        );
        assert_eq!(e.status_word(), Some(0x6985));
    }

    #[test]
    fn unknown_status_words_are_reported_as_such() {
        let e = Error::from_status("GET DATA", 0x6F42);
        assert!(
            e.to_string().contains("unknown status word (SW 6F42)"),
            "{e}"
        );
    }
}
