//! The card: logical channels, applet selection, CLA rules, T=0 response
//! handling, and dispatch of the IoT SAFE commands to their handlers.

mod foreign;
mod keys;
mod objects;
mod sessions;
#[cfg(test)]
mod tests;

use crate::apdu::{self, sw, Command, Response};
use crate::state::Store;
use sessions::{Session, SessionKind};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The GSMA IoT SAFE applet AID (GSMA IoT.05; Orange's IoT SAFE host library,
/// `iot_safe.h`, selects the same).
pub const GSMA_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x05, 0x59, 0x00, 0x10];
/// The AID of Thales' IoT SAFE applet, as its middleware selects it (README of
/// ThalesGroup/iot-safe-middleware, "Applet selection"; also shared/reference/iotsafe-applet.md).
pub const THALES_AID: [u8; 15] = [
    0xA0, 0x00, 0x00, 0x00, 0x30, 0x53, 0xF1, 0x24, 0x01, 0x77, 0x01, 0x01, 0x49, 0x53, 0x41,
];
/// An early CIRA/TELUS deployment (shared/reference/iotsafe-applet.md).
pub const CIRA_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x02, 0x48, 0x04, 0x00];

/// The AIDs `--aid` knows by name.
pub const NAMED_AIDS: [(&str, &[u8]); 3] = [
    ("gsma", &GSMA_AID),
    ("thales", &THALES_AID),
    ("cira", &CIRA_AID),
];

/// Logical channels of a card by default: 0..=3, what the first interindustry class bytes
/// address.
pub const DEFAULT_CHANNELS: usize = 4;
/// The most a UICC has: 0..=19 (ETSI TS 102 221; channels 4..=19 need the further
/// interindustry class bytes `4x`/`6x` of ISO 7816-4 5.4.1).
pub const MAX_CHANNELS: usize = 20;

/// Which class byte the applet's proprietary commands must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaStyle {
    /// `0x0n`, as the Orange and Thales applets do.
    Interindustry,
    /// `0x8n`, as wolfSSL and ZARIOT hosts send.
    Proprietary,
}

/// Encoding of the signature in the COMPUTE SIGNATURE UPDATE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigLen {
    /// `33 40 r||s`
    Short,
    /// `33 00 40 r||s`
    Long,
}

/// Behaviour switches, all settable from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub aids: Vec<Vec<u8>>,
    pub cla_style: ClaStyle,
    pub sig_len: SigLen,
    /// T=0 card: data comes back through 61xx / GET RESPONSE.
    pub t0: bool,
    /// Largest object-list chunk before answering 6300.
    pub page_size: usize,
    /// Status word for READ FILE at or past the end (6A86 or 6981).
    pub read_past_end: u16,
    /// A broken or hostile card: the size (tag 20 value) announced for every file instead
    /// of the real one.
    pub file_size: Option<Vec<u8>>,
    /// Logical channels including the basic one, 1..=[`MAX_CHANNELS`]; 1 means a card
    /// without logical channels (MANAGE CHANNEL answers 6881).
    pub channels: usize,
    /// Another vendor's applet, selectable beside ours (see `foreign.rs`).
    pub foreign_aid: Option<Vec<u8>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            aids: vec![GSMA_AID.to_vec()],
            cla_style: ClaStyle::Interindustry,
            sig_len: SigLen::Short,
            t0: false,
            page_size: 200,
            read_past_end: sw::INCORRECT_P1P2,
            file_size: None,
            channels: DEFAULT_CHANNELS,
            foreign_aid: None,
        }
    }
}

/// Per-channel applet state; all of it is transient (lost at reset).
#[derive(Default)]
struct Channel {
    selected: bool,
    sessions: HashMap<(SessionKind, u8), Session>,
    /// Rest of an object list that did not fit one response (6300).
    list_rest: Option<Vec<u8>>,
}

/// Data held back for GET RESPONSE after a 61xx (T=0 only).
struct Pending {
    data: Vec<u8>,
    sw: u16,
}

/// Handlers return the response, or the status word of the failure.
type Outcome = Result<Response, u16>;

pub struct Applet {
    cfg: Config,
    store: Store,
    /// Open channels, indexed by number; `cfg.channels` long.
    channels: Vec<Option<Channel>>,
    pending: Option<Pending>,
    /// When counters changed that are not saved yet (see [`Applet::count_signature`]).
    unsaved_since: Option<Instant>,
}

/// Signature counters are saved at most this often (and at reset and exit): a write per
/// signature would be most of the simulator's time per APDU, and a counter is all it would save.
const COUNTER_SAVE_INTERVAL: Duration = Duration::from_secs(1);

impl Applet {
    pub fn new(cfg: Config, store: Store) -> Self {
        let mut applet = Applet {
            cfg,
            store,
            channels: Vec::new(),
            pending: None,
            unsaved_since: None,
        };
        applet.reset();
        applet
    }

    #[cfg(test)]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Power off or reset: every channel but the basic one closes, all
    /// sessions and volatile objects are lost.
    pub fn reset(&mut self) {
        self.flush();
        let count = self.cfg.channels.clamp(1, MAX_CHANNELS);
        self.channels = std::iter::repeat_with(|| None).take(count).collect();
        self.channels[0] = Some(Channel::default());
        self.pending = None;
        self.store.drop_volatile();
    }

    /// Processes one command APDU and returns the response bytes. Never
    /// panics on malformed input: everything maps to a status word.
    pub fn process(&mut self, raw: &[u8]) -> Vec<u8> {
        let resp = match apdu::parse(raw) {
            Ok(cmd) => self.execute(&cmd),
            Err(code) => {
                self.pending = None;
                Response::status(code)
            }
        };
        resp.to_bytes()
    }

    fn execute(&mut self, cmd: &Command) -> Response {
        if cmd.ins == 0xC0 {
            return self.get_response(cmd).unwrap_or_else(Response::status);
        }
        self.pending = None;
        let resp = self.dispatch(cmd).unwrap_or_else(Response::status);
        if self.cfg.t0 {
            self.t0_wrap(cmd, resp)
        } else {
            resp
        }
    }

    /// T=0 cards send data directly only for a command without data whose
    /// Le (P3) is exactly the length; otherwise they announce it with 61xx,
    /// or ask for the right Le with 6Cxx when Le is too short.
    fn t0_wrap(&mut self, cmd: &Command, resp: Response) -> Response {
        let len = resp.data.len();
        let len_byte = (len.min(256) & 0xFF) as u16;
        match cmd.le {
            _ if len == 0 => resp,
            Some(le) if le == len && cmd.data.is_empty() => resp,
            Some(le) if le < len => Response::status(0x6C00 | len_byte),
            _ => {
                self.pending = Some(Pending {
                    data: resp.data,
                    sw: resp.sw,
                });
                Response::status(0x6100 | len_byte)
            }
        }
    }

    fn get_response(&mut self, cmd: &Command) -> Outcome {
        let (_, ch) = decode_cla(cmd.cla).ok_or(sw::CLA_NOT_SUPPORTED)?;
        self.channel(ch)?;
        if (cmd.p1, cmd.p2) != (0, 0) {
            return Err(sw::INCORRECT_P1P2);
        }
        let mut pending = self.pending.take().ok_or(sw::CONDITIONS_NOT_SATISFIED)?;
        let n = cmd.le.unwrap_or(256).min(pending.data.len());
        let rest = pending.data.split_off(n);
        if rest.is_empty() {
            return Ok(Response {
                data: pending.data,
                sw: pending.sw,
            });
        }
        let more = 0x6100 | (rest.len().min(256) & 0xFF) as u16;
        let out = std::mem::replace(&mut pending.data, rest);
        self.pending = Some(pending);
        Ok(Response {
            data: out,
            sw: more,
        })
    }

    fn dispatch(&mut self, cmd: &Command) -> Outcome {
        let (style, ch) = decode_cla(cmd.cla).ok_or(sw::CLA_NOT_SUPPORTED)?;
        let allowed = match cmd.ins {
            0x70 | 0xA4 => style == ClaStyle::Interindustry,
            _ => style == self.cfg.cla_style,
        };
        if !allowed {
            return Err(sw::CLA_NOT_SUPPORTED);
        }
        let selected = self.channel(ch)?.selected;
        match cmd.ins {
            0x70 => self.manage_channel(ch, cmd),
            0xA4 => self.select(ch, cmd),
            // Without the applet, the card OS knows none of these.
            _ if !selected => Err(sw::INS_NOT_SUPPORTED),
            _ => self.applet_command(ch, cmd),
        }
    }

    fn applet_command(&mut self, ch: usize, cmd: &Command) -> Outcome {
        match cmd.ins {
            0x84 => objects::get_random(cmd),
            0xCB => self.get_data(ch, cmd),
            0xB0 => self.read_file(cmd),
            0xCD => self.read_public_key(cmd),
            0x2A => self.sign_init(ch, cmd),
            0x2B => self.sign_update(ch, cmd),
            0x2C => self.verify_init(ch, cmd),
            0x2D => self.verify_update(ch, cmd),
            0xB9 => self.generate_key_pair(cmd),
            0x24 => self.put_key_session(ch, cmd),
            0xD8 => self.put_key_data(ch, cmd),
            0x46 => self.compute_dh(cmd),
            _ => Err(sw::INS_NOT_SUPPORTED),
        }
    }

    fn channel(&mut self, ch: usize) -> Result<&mut Channel, u16> {
        self.channels
            .get_mut(ch)
            .and_then(Option::as_mut)
            .ok_or(sw::CHANNEL_NOT_SUPPORTED)
    }

    fn manage_channel(&mut self, ch: usize, cmd: &Command) -> Outcome {
        let count = self.channels.len();
        if count == 1 {
            // A card without logical channels.
            return Err(sw::CHANNEL_NOT_SUPPORTED);
        }
        match (cmd.p1, cmd.p2) {
            (0x00, 0x00) => {
                let new = (1..count)
                    .find(|&n| self.channels[n].is_none())
                    .ok_or(sw::FUNC_NOT_SUPPORTED)?;
                self.open_channel(ch, new);
                Ok(Response::ok(vec![new as u8]))
            }
            (0x00, n) if (1..count).contains(&(n as usize)) => {
                if self.channels[n as usize].is_some() {
                    return Err(sw::FUNC_NOT_SUPPORTED);
                }
                self.open_channel(ch, n as usize);
                Ok(Response::ok(Vec::new()))
            }
            (0x80, n) => {
                // P2 = 00 closes the channel the command came on.
                let target = if n == 0 { ch } else { n as usize };
                if target == 0 || target >= count {
                    return Err(sw::INCORRECT_P1P2);
                }
                self.channels[target]
                    .take()
                    .ok_or(sw::CHANNEL_NOT_SUPPORTED)?;
                Ok(Response::ok(Vec::new()))
            }
            _ => Err(sw::INCORRECT_P1P2),
        }
    }

    /// ISO 7816-4: a channel opened from a non-basic channel inherits its
    /// selection; one opened from the basic channel starts unselected.
    fn open_channel(&mut self, from: usize, new: usize) {
        let inherit = from != 0 && self.channels[from].as_ref().is_some_and(|c| c.selected);
        self.channels[new] = Some(Channel {
            selected: inherit,
            ..Channel::default()
        });
    }

    fn select(&mut self, ch: usize, cmd: &Command) -> Outcome {
        if cmd.p1 != 0x04 {
            return Err(sw::NOT_FOUND);
        }
        if !matches!(cmd.p2, 0x00 | 0x04 | 0x0C) {
            return Err(sw::INCORRECT_P1P2);
        }
        if let Some(foreign) = self.select_foreign(ch, cmd) {
            return foreign;
        }
        if !self.cfg.aids.contains(&cmd.data) {
            return Err(sw::NOT_FOUND);
        }
        // (Re)selection starts the applet afresh on this channel.
        *self.channel(ch)? = Channel {
            selected: true,
            ..Channel::default()
        };
        Ok(Response::ok(Vec::new()))
    }

    /// Notes a changed signature counter; saves when the last change is a while ago.
    fn count_signature(&mut self) {
        let since = *self.unsaved_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= COUNTER_SAVE_INTERVAL {
            self.flush();
        }
    }

    /// Saves counters not saved yet (at reset, power-off and exit).
    pub fn flush(&mut self) {
        if self.unsaved_since.take().is_some() {
            let _ = self.persist();
        }
    }

    /// Saves the store; a failure is reported as "no memory".
    fn persist(&self) -> Result<(), u16> {
        self.store.save().map_err(|e| {
            eprintln!("iotsafe-sim: cannot save state: {e}");
            sw::NO_MEMORY
        })
    }
}

/// Splits a class byte into (style, channel), ISO 7816-4 5.4.1: the first interindustry
/// classes `0x`..`1x` carry channels 0..=3 in b2-b1, the further interindustry classes
/// `4x`..`7x` carry channels 4..=19 as channel - 4 in b4-b1. With b8 set (`8x`, `Cx`) the
/// same encodings mark the applet's proprietary commands (ETSI TS 102 221 10.1.1).
/// Secure messaging and command chaining are not supported.
fn decode_cla(cla: u8) -> Option<(ClaStyle, usize)> {
    let style = if cla & 0x80 == 0 {
        ClaStyle::Interindustry
    } else {
        ClaStyle::Proprietary
    };
    if cla & 0x40 == 0 {
        // First classes: b6 must be 0 (0x20..0x3F is reserved), b5 chaining, b4-b3 SM.
        (cla & 0x3C == 0).then_some((style, (cla & 0x03) as usize))
    } else {
        // Further classes: b6 secure messaging, b5 chaining.
        (cla & 0x30 == 0).then_some((style, 4 + (cla & 0x0F) as usize))
    }
}
