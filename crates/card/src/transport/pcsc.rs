//! PC/SC transport (pcsc-lite on Linux): shared mode, T=0 or T=1, a PC/SC transaction around
//! every multi-APDU operation (kept across back-to-back operations when asked, so that a
//! signature costs its two transmissions and nothing more), reconnection after a reset or a
//! removal.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
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
    connection: Option<Connection>,
    /// Whether a transaction outlives the link that began it (until [`Transport::release`]).
    keep: bool,
    /// Receives responses; kept for the connection's life rather than made per operation.
    buffer: Vec<u8>,
}

/// Every call this process made to the PC/SC daemon through a [`PcscTransport`] (each is one
/// IPC round trip to pcscd): begin and end of transactions, transmissions, reconnections.
pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(Ordering::Relaxed)
}

static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

fn count_round_trip() {
    ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
}

/// A card handle and the transaction open on it, if any. The transaction borrows the card,
/// which lives behind a raw pointer so that both can sit in one struct: the card is reached
/// only through the transaction while one is open, and freed only after it ended.
struct Connection {
    card: NonNull<Card>,
    transaction: Option<Transaction<'static>>,
}

// SAFETY: `Card` is Send, and the transaction is a `&mut Card` to the card this value owns;
// both move together.
unsafe impl Send for Connection {}

impl Connection {
    fn new(card: Card) -> Self {
        Connection {
            card: NonNull::from(Box::leak(Box::new(card))),
            transaction: None,
        }
    }

    /// Begins a transaction unless one is open; true when it began one.
    fn begin(&mut self) -> std::result::Result<bool, pcsc::Error> {
        if self.transaction.is_some() {
            return Ok(false);
        }
        // SAFETY: the card is owned by `self` and outlives the transaction (`end` runs before
        // the card is touched otherwise, and in `drop` before it is freed); no other
        // reference to it exists while the transaction does.
        let card: &'static mut Card = unsafe { &mut *self.card.as_ptr() };
        count_round_trip();
        self.transaction = Some(card.transaction()?);
        Ok(true)
    }

    /// Ends the open transaction, if any (leaving the card as it is).
    fn end(&mut self) {
        if self.transaction.take().is_some() {
            count_round_trip();
        }
    }

    /// The card inside the open transaction.
    fn in_transaction(&self) -> &Card {
        self.transaction
            .as_deref()
            .expect("transmissions happen inside a transaction")
    }

    /// The card itself, with no transaction open.
    fn card(&mut self) -> &mut Card {
        self.end();
        // SAFETY: owned by `self`; the transaction that borrowed it has just ended.
        unsafe { &mut *self.card.as_ptr() }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.end();
        // SAFETY: allocated by `Connection::new`, no transaction borrows it any more.
        let card = unsafe { Box::from_raw(self.card.as_ptr()) };
        // pcsc's default disconnect resets the card, which would tear down every other
        // process's channels: leave the card as it is instead. A failed disconnect hands the
        // card back, whose drop would reset it: it is forgotten (pcscd frees the handle when
        // this process's connection closes).
        if let Err((card, _)) = card.disconnect(Disposition::LeaveCard) {
            std::mem::forget(card);
        }
    }
}

impl PcscTransport {
    /// Connects to the card in the reader named exactly `reader`.
    pub fn connect(reader: &str) -> Result<Self> {
        let context = establish()?;
        let card = connect_card(&context, reader)?;
        Ok(PcscTransport {
            reader: reader.to_string(),
            context,
            connection: Some(Connection::new(card)),
            keep: false,
            buffer: vec![0; MAX_BUFFER_SIZE_EXTENDED],
        })
    }

    /// The card's ATR, as the reader reports it.
    pub fn atr(&mut self) -> Result<Vec<u8>> {
        let connection = self.connection.as_mut().ok_or_else(|| Error::CardAbsent {
            reader: self.reader.clone(),
        })?;
        let status = connection
            .card()
            .status2_owned()
            .map_err(|e| map_pcsc_error(&self.reader, "SCardStatus", e))?;
        Ok(status.atr().to_vec())
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
        let connection = self.connection.as_mut().ok_or_else(|| Error::CardAbsent {
            reader: reader.to_string(),
        })?;
        let newly_acquired = connection
            .begin()
            .map_err(|e| map_pcsc_error(reader, "SCardBeginTransaction", e))?;
        Ok(Box::new(PcscLink {
            reader,
            connection,
            keep: self.keep,
            newly_acquired,
            buffer: &mut self.buffer,
        }))
    }

    fn recover(&mut self) -> Result<()> {
        if let Some(connection) = self.connection.as_mut() {
            count_round_trip();
            if connection
                .card()
                .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard)
                .is_ok()
            {
                return Ok(());
            }
        }
        // The handle is stale (card re-inserted, daemon restarted): start from a new context.
        self.connection = None;
        if self.context.is_valid().is_err() {
            self.context = establish()?;
        }
        self.connection = Some(Connection::new(connect_card(&self.context, &self.reader)?));
        Ok(())
    }

    fn keep_between_operations(&mut self, keep: bool) {
        self.keep = keep;
        if !keep {
            self.release();
        }
    }

    fn release(&mut self) {
        if let Some(connection) = self.connection.as_mut() {
            connection.end();
        }
    }
}

struct PcscLink<'a> {
    reader: &'a str,
    connection: &'a mut Connection,
    /// Whether the transaction stays open when the link goes.
    keep: bool,
    newly_acquired: bool,
    buffer: &'a mut [u8],
}

impl Drop for PcscLink<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.connection.end();
        }
    }
}

impl Link for PcscLink<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        count_round_trip();
        let response = self
            .connection
            .in_transaction()
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

    fn newly_acquired(&self) -> bool {
        self.newly_acquired
    }
}
