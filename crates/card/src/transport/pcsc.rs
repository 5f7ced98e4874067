//! PC/SC transport (pcsc-lite on Linux): shared mode, T=0 or T=1, a PC/SC transaction around
//! every multi-APDU operation, reconnection after a reset or a removal.

use std::ffi::CString;

use std::time::Duration;

use pcsc::{
    Card, Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State, Transaction,
    MAX_BUFFER_SIZE_EXTENDED,
};

use super::{Link, Transport};
use crate::error::{Error, Result};

/// Lists the readers PC/SC knows.
pub fn reader_names() -> Result<Vec<String>> {
    let context = establish()?;
    list_readers(&context)
}

/// The readers PC/SC knows, each with whether a card is in it.
pub fn reader_presence() -> Result<Vec<(String, bool)>> {
    let context = establish()?;
    let names = list_readers(&context)?;
    let mut states: Vec<ReaderState> = names
        .iter()
        .filter_map(|n| CString::new(n.as_str()).ok())
        .map(|n| ReaderState::new(n, State::UNAWARE))
        .collect();
    if !states.is_empty() {
        context
            .get_status_change(Duration::ZERO, &mut states)
            .map_err(|e| Error::Transport(format!("cannot read the readers' state: {e}")))?;
    }
    Ok(states
        .iter()
        .map(|s| {
            (
                s.name().to_string_lossy().into_owned(),
                s.event_state().contains(State::PRESENT),
            )
        })
        .collect())
}

fn establish() -> Result<Context> {
    Context::establish(Scope::User).map_err(|e| {
        Error::Transport(format!(
            "cannot reach the PC/SC daemon (is pcscd running?): {e}"
        ))
    })
}

fn list_readers(context: &Context) -> Result<Vec<String>> {
    match context.list_readers_owned() {
        Ok(names) => Ok(names
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(Error::Transport(format!("cannot list PC/SC readers: {e}"))),
    }
}

/// The readers whose name contains `filter` (all readers without a filter).
/// Fails with a message that lists the readers there are, when none matches.
pub fn matching_readers(filter: Option<&str>) -> Result<Vec<String>> {
    let all = reader_names()?;
    let matching: Vec<String> = all
        .iter()
        .filter(|name| filter.is_none_or(|f| name.contains(f)))
        .cloned()
        .collect();
    if matching.is_empty() {
        let wanted = filter
            .map(|f| format!("matching '{f}' "))
            .unwrap_or_default();
        let known = if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        };
        return Err(Error::NoReader(format!(
            "no reader {wanted}(readers: {known})"
        )));
    }
    Ok(matching)
}

/// A card in a PC/SC reader, connected in shared mode.
pub struct PcscTransport {
    reader: String,
    context: Context,
    card: Option<Card>,
    /// Receives responses; kept for the connection's life rather than made per operation.
    buffer: Vec<u8>,
}

impl PcscTransport {
    /// Connects to the card in the reader named exactly `reader`.
    pub fn connect(reader: &str) -> Result<Self> {
        let context = establish()?;
        let card = connect_card(&context, reader)?;
        Ok(PcscTransport {
            reader: reader.to_string(),
            context,
            card: Some(card),
            buffer: vec![0; MAX_BUFFER_SIZE_EXTENDED],
        })
    }

    /// The card's ATR, as the reader reports it.
    pub fn atr(&self) -> Result<Vec<u8>> {
        let card = self.card.as_ref().ok_or_else(|| self.absent())?;
        let status = card
            .status2_owned()
            .map_err(|e| self.map_error("SCardStatus", e))?;
        Ok(status.atr().to_vec())
    }

    fn absent(&self) -> Error {
        Error::CardAbsent {
            reader: self.reader.clone(),
        }
    }

    fn map_error(&self, operation: &str, e: pcsc::Error) -> Error {
        map_pcsc_error(&self.reader, operation, e)
    }
}

fn connect_card(context: &Context, reader: &str) -> Result<Card> {
    let name =
        CString::new(reader).map_err(|_| Error::Invalid(format!("reader name {reader:?}")))?;
    context
        .connect(&name, ShareMode::Shared, Protocols::ANY)
        .map_err(|e| map_pcsc_error(reader, "SCardConnect", e))
}

fn map_pcsc_error(reader: &str, operation: &str, e: pcsc::Error) -> Error {
    use pcsc::Error as E;
    match e {
        // A transaction that vanished under us means the card was reset or re-powered
        // (pcscd powers idle cards down) between our calls.
        E::ResetCard | E::NotTransacted => Error::CardReset {
            reader: reader.to_string(),
        },
        E::RemovedCard | E::NoSmartcard | E::UnpoweredCard | E::UnresponsiveCard => {
            Error::CardAbsent {
                reader: reader.to_string(),
            }
        }
        E::UnknownReader | E::ReaderUnavailable => {
            Error::NoReader(format!("reader '{reader}' is gone ({operation}: {e})"))
        }
        _ => Error::Transport(format!("{operation} on reader '{reader}' failed: {e}")),
    }
}

impl Transport for PcscTransport {
    fn name(&self) -> &str {
        &self.reader
    }

    fn link(&mut self) -> Result<Box<dyn Link + '_>> {
        let reader = self.reader.as_str();
        let card = self.card.as_mut().ok_or_else(|| Error::CardAbsent {
            reader: reader.to_string(),
        })?;
        let transaction = card
            .transaction()
            .map_err(|e| map_pcsc_error(reader, "SCardBeginTransaction", e))?;
        Ok(Box::new(PcscLink {
            reader,
            transaction,
            buffer: &mut self.buffer,
        }))
    }

    fn recover(&mut self) -> Result<()> {
        if let Some(card) = self.card.as_mut() {
            if card
                .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard)
                .is_ok()
            {
                return Ok(());
            }
        }
        // The handle is stale (card re-inserted, daemon restarted): start from a new context.
        self.card = None;
        if self.context.is_valid().is_err() {
            self.context = establish()?;
        }
        self.card = Some(connect_card(&self.context, &self.reader)?);
        Ok(())
    }
}

impl Drop for PcscTransport {
    fn drop(&mut self) {
        // pcsc's default disconnect resets the card, which would tear down every other
        // process's channels: leave the card as it is instead.
        if let Some(card) = self.card.take() {
            let _ = card.disconnect(Disposition::LeaveCard);
        }
    }
}

struct PcscLink<'a> {
    reader: &'a str,
    transaction: Transaction<'a>,
    buffer: &'a mut [u8],
}

impl Link for PcscLink<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        let response = self
            .transaction
            .transmit(command, self.buffer)
            .map_err(|e| map_pcsc_error(self.reader, "SCardTransmit", e))?;
        // Some reader drivers (vpcd among them) report a card that vanished mid-command as
        // a successful transmission of nothing.
        if response.is_empty() {
            return Err(Error::CardAbsent {
                reader: self.reader.to_string(),
            });
        }
        Ok(response.to_vec())
    }
}
