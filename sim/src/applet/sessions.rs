//! COMPUTE SIGNATURE and VERIFY SIGNATURE: INIT opens a session on a
//! channel, UPDATE feeds it and, on the last block, signs or verifies.
//!
//! A session left open (say, an UPDATE that failed) blocks a new INIT with
//! the same number until the host closes it, as deployed applets do.

use super::objects::{ref_from, MAX_SESSIONS};
use super::{Applet, Outcome, SigLen};
use crate::apdu::{sw, Command, Response};
use crate::crypto::{self, HashAlg, FIELD_LEN};
use crate::state::ObjRef;
use crate::tlv::{self, TAG_SIGNATURE};
use openssl::hash::Hasher;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    Sign,
    Verify,
    PutKey,
}

/// Operation mode (tag A1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The applet hashes the message sent in UPDATE blocks.
    FullText,
    /// The host sends the finished digest.
    PadAndSign,
}

pub struct CryptoSession {
    key: ObjRef,
    mode: Mode,
    hash: HashAlg,
    hasher: Option<Hasher>,
}

pub enum Session {
    Crypto(CryptoSession),
    /// PUT PUBLIC KEY: target public key id and the data received so far.
    PutKey {
        pub_id: Vec<u8>,
        buf: Vec<u8>,
    },
}

/// P1 of UPDATE: last block or more to come.
const LAST: u8 = 0x80;
const MORE: u8 = 0x00;

/// Session numbers (P2) accepted.
pub fn check_session_number(p2: u8) -> Result<u8, u16> {
    if p2 < MAX_SESSIONS {
        Ok(p2)
    } else {
        Err(sw::INCORRECT_P1P2)
    }
}

/// Parses INIT data: key reference, A1 mode, 91 hash, 92 algorithm.
fn parse_init(data: &[u8], id_tag: u8, label_tag: u8) -> Result<CryptoSession, u16> {
    let items = tlv::parse(data).ok_or(sw::INCORRECT_DATA)?;
    let key = ref_from(&items, id_tag, label_tag)?;
    let mode = match tlv::find(&items, 0xA1) {
        Some([0x01]) => Mode::FullText,
        Some([0x03]) => Mode::PadAndSign,
        _ => return Err(sw::INCORRECT_DATA),
    };
    let hash = tlv::find(&items, 0x91)
        .and_then(HashAlg::from_id)
        .ok_or(sw::INCORRECT_DATA)?;
    if tlv::find(&items, 0x92) != Some(&[0x04]) {
        return Err(sw::INCORRECT_DATA); // ECDSA is all a P-256 key does
    }
    let hasher = match mode {
        Mode::FullText => Some(Hasher::new(hash.md()).map_err(|_| sw::UNKNOWN)?),
        Mode::PadAndSign => None,
    };
    Ok(CryptoSession {
        key,
        mode,
        hash,
        hasher,
    })
}

impl CryptoSession {
    /// Takes one UPDATE block; on the last one returns the digest to sign
    /// or verify.
    fn feed(&mut self, p1: u8, block: Option<&[u8]>) -> Result<Option<Vec<u8>>, u16> {
        match (self.mode, p1) {
            (Mode::PadAndSign, LAST) => {
                let digest = block.ok_or(sw::INCORRECT_DATA)?;
                if digest.len() != self.hash.digest_len() {
                    return Err(sw::INCORRECT_DATA);
                }
                Ok(Some(digest.to_vec()))
            }
            (Mode::PadAndSign, _) => Err(sw::CONDITIONS_NOT_SATISFIED),
            (Mode::FullText, _) => {
                let hasher = self.hasher.as_mut().ok_or(sw::CONDITIONS_NOT_SATISFIED)?;
                if let Some(chunk) = block {
                    hasher.update(chunk).map_err(|_| sw::UNKNOWN)?;
                }
                if p1 != LAST {
                    return Ok(None);
                }
                Ok(Some(hasher.finish().map_err(|_| sw::UNKNOWN)?.to_vec()))
            }
        }
    }
}

fn update_p1(p1: u8) -> Result<u8, u16> {
    match p1 {
        LAST | MORE => Ok(p1),
        _ => Err(sw::INCORRECT_P1P2),
    }
}

impl Applet {
    pub(super) fn sign_init(&mut self, ch: usize, cmd: &Command) -> Outcome {
        let n = check_session_number(cmd.p2)?;
        match cmd.p1 {
            0x00 => {
                let session = parse_init(&cmd.data, 0x84, 0x74)?;
                self.store.private(&session.key).ok_or(sw::NOT_FOUND)?;
                self.open_session(ch, SessionKind::Sign, n, Session::Crypto(session))
            }
            0x01 => self.close_session(ch, SessionKind::Sign, n),
            _ => Err(sw::INCORRECT_P1P2),
        }
    }

    pub(super) fn verify_init(&mut self, ch: usize, cmd: &Command) -> Outcome {
        let n = check_session_number(cmd.p2)?;
        match cmd.p1 {
            0x00 => {
                let session = parse_init(&cmd.data, 0x85, 0x75)?;
                let key = self.store.public(&session.key).ok_or(sw::NOT_FOUND)?;
                key.q.as_ref().ok_or(sw::CONDITIONS_NOT_SATISFIED)?;
                self.open_session(ch, SessionKind::Verify, n, Session::Crypto(session))
            }
            0x01 => self.close_session(ch, SessionKind::Verify, n),
            _ => Err(sw::INCORRECT_P1P2),
        }
    }

    pub(super) fn open_session(
        &mut self,
        ch: usize,
        kind: SessionKind,
        n: u8,
        session: Session,
    ) -> Outcome {
        let sessions = &mut self.channel(ch)?.sessions;
        if sessions.contains_key(&(kind, n)) {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        }
        sessions.insert((kind, n), session);
        Ok(Response::ok(Vec::new()))
    }

    /// Closing is idempotent: hosts send it on error paths.
    pub(super) fn close_session(&mut self, ch: usize, kind: SessionKind, n: u8) -> Outcome {
        self.channel(ch)?.sessions.remove(&(kind, n));
        Ok(Response::ok(Vec::new()))
    }

    /// Runs one UPDATE block against an open crypto session. Returns the
    /// session's key reference and the digest once the last block is in.
    fn crypto_update(
        &mut self,
        ch: usize,
        kind: SessionKind,
        cmd: &Command,
        block: Option<&[u8]>,
    ) -> Result<Option<(ObjRef, Vec<u8>)>, u16> {
        let p1 = update_p1(cmd.p1)?;
        let n = check_session_number(cmd.p2)?;
        let sessions = &mut self.channel(ch)?.sessions;
        let Some(Session::Crypto(session)) = sessions.get_mut(&(kind, n)) else {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        };
        let Some(digest) = session.feed(p1, block)? else {
            return Ok(None);
        };
        let key = session.key.clone();
        sessions.remove(&(kind, n));
        Ok(Some((key, digest)))
    }

    pub(super) fn sign_update(&mut self, ch: usize, cmd: &Command) -> Outcome {
        let items = tlv::parse(&cmd.data).ok_or(sw::INCORRECT_DATA)?;
        let block = tlv::find(&items, 0x9E);
        let Some((key, digest)) = self.crypto_update(ch, SessionKind::Sign, cmd, block)? else {
            return Ok(Response::ok(Vec::new()));
        };
        let k = self.store.private_mut(&key).ok_or(sw::NOT_FOUND)?;
        let rs = crypto::sign_digest(&k.d, &digest).map_err(|_| sw::UNKNOWN)?;
        k.sign_count += 1;
        // The signature is made; a failed counter write must not lose it.
        self.count_signature();
        Ok(Response::ok(self.signature_tlv(&rs)))
    }

    fn signature_tlv(&self, rs: &[u8]) -> Vec<u8> {
        let mut out = match self.cfg.sig_len {
            SigLen::Short => vec![TAG_SIGNATURE, 0x40],
            SigLen::Long => vec![TAG_SIGNATURE, 0x00, 0x40],
        };
        out.extend_from_slice(rs);
        out
    }

    pub(super) fn verify_update(&mut self, ch: usize, cmd: &Command) -> Outcome {
        let items = tlv::parse(&cmd.data).ok_or(sw::INCORRECT_DATA)?;
        let block = tlv::find(&items, 0x9E);
        let sig = tlv::find(&items, TAG_SIGNATURE);
        if cmd.p1 == LAST && sig.is_none_or(|s| s.len() != 2 * FIELD_LEN) {
            return Err(sw::INCORRECT_DATA);
        }
        let Some((key, digest)) = self.crypto_update(ch, SessionKind::Verify, cmd, block)? else {
            return Ok(Response::ok(Vec::new()));
        };
        let q = self.store.public(&key).and_then(|k| k.q.as_ref());
        let q = q.ok_or(sw::NOT_FOUND)?;
        let sig = sig.unwrap_or_default();
        if crypto::verify_digest(q, &digest, sig) {
            Ok(Response::ok(Vec::new()))
        } else {
            Err(sw::SIGNATURE_MISMATCH)
        }
    }
}
