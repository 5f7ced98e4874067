//! Key management: GENERATE KEY PAIR, PUT PUBLIC KEY, COMPUTE DH.

use super::objects::{obj_ref, public_key_tlv, ref_from, MAX_PRIVATE_KEYS, MAX_PUBLIC_KEYS};
use super::sessions::{check_session_number, Session, SessionKind};
use super::{Applet, Outcome};
use crate::apdu::{sw, Command, Response};
use crate::crypto;
use crate::hex;
use crate::state::{ObjRef, PrivateKey, PublicKey};
use crate::tlv;

/// Usage (tag 4E) of keys created on the card: general purpose.
const USAGE_GENERAL: u8 = 0x01;

fn require_p1p2_zero(cmd: &Command) -> Result<(), u16> {
    if (cmd.p1, cmd.p2) == (0, 0) {
        Ok(())
    } else {
        Err(sw::INCORRECT_P1P2)
    }
}

/// Digs the point out of `34 {49 {86 point}}`; the bare inner forms are
/// accepted too.
fn point_from_put(data: &[u8]) -> Result<Vec<u8>, u16> {
    let mut level = data;
    for tag in [0x34, 0x49, 0x86] {
        let items = tlv::parse(level).ok_or(sw::INCORRECT_DATA)?;
        if let Some(inner) = tlv::find(&items, tag) {
            level = inner;
        } else if tag == 0x34 {
            continue; // container omitted
        } else {
            return Err(sw::INCORRECT_DATA);
        }
    }
    if crypto::is_valid_point(level) {
        Ok(level.to_vec())
    } else {
        Err(sw::INCORRECT_DATA)
    }
}

impl Applet {
    pub(super) fn generate_key_pair(&mut self, cmd: &Command) -> Outcome {
        require_p1p2_zero(cmd)?;
        let r = obj_ref(&cmd.data, 0x84, 0x74)?;
        let (d, q) = crypto::generate().map_err(|_| sw::UNKNOWN)?;
        let (id, pub_id) = match self.store.private_mut(&r) {
            Some(k) => {
                k.d = d;
                (k.id.clone(), k.pub_id.clone())
            }
            None => self.create_pair(&r, d)?,
        };
        self.set_pair_public(&pub_id, &q)?;
        self.persist()?;
        let mut out = tlv::encode(0x84, &id);
        tlv::put(&mut out, 0x85, &pub_id);
        out.extend(public_key_tlv(&q));
        Ok(Response::ok(out))
    }

    /// New private key object named by id; its public key gets the same id.
    fn create_pair(&mut self, r: &ObjRef, d: Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), u16> {
        let ObjRef::Id(id) = r else {
            return Err(sw::NOT_FOUND); // a label cannot name a new object
        };
        if self.store.privs.len() >= MAX_PRIVATE_KEYS {
            return Err(sw::NO_MEMORY);
        }
        let label = format!("KEY-{}", hex::encode(id)).into_bytes();
        self.store.privs.push(PrivateKey {
            id: id.clone(),
            label,
            usage: USAGE_GENERAL,
            d,
            pub_id: id.clone(),
            sign_count: 0,
        });
        Ok((id.clone(), id.clone()))
    }

    /// Stores the public half of a pair, creating its object if needed.
    fn set_pair_public(&mut self, pub_id: &[u8], q: &[u8]) -> Result<(), u16> {
        let r = ObjRef::Id(pub_id.to_vec());
        if let Some(k) = self.store.public_mut(&r) {
            k.q = Some(q.to_vec());
            k.volatile = false;
            return Ok(());
        }
        let label = self
            .store
            .privs
            .iter()
            .find(|k| k.pub_id == pub_id)
            .map(|k| k.label.clone())
            .unwrap_or_default();
        self.store.pubs.push(PublicKey {
            id: pub_id.to_vec(),
            label,
            usage: USAGE_GENERAL,
            q: Some(q.to_vec()),
            volatile: false,
        });
        Ok(())
    }

    pub(super) fn put_key_session(&mut self, ch: usize, cmd: &Command) -> Outcome {
        let n = check_session_number(cmd.p2)?;
        match cmd.p1 {
            0x00 => {
                let pub_id = self.put_target(&cmd.data)?;
                let session = Session::PutKey {
                    pub_id,
                    buf: Vec::new(),
                };
                self.open_session(ch, SessionKind::PutKey, n, session)
            }
            0x01 => self.close_session(ch, SessionKind::PutKey, n),
            _ => Err(sw::INCORRECT_P1P2),
        }
    }

    /// The public key object a PUT session writes: an existing one that is
    /// not the half of a card key pair, or a new volatile one.
    fn put_target(&mut self, data: &[u8]) -> Result<Vec<u8>, u16> {
        let items = tlv::parse(data).ok_or(sw::INCORRECT_DATA)?;
        let r = ref_from(&items, 0x85, 0x75)?;
        if let Some(k) = self.store.public(&r) {
            if self.store.is_paired(&k.id) {
                return Err(sw::CONDITIONS_NOT_SATISFIED);
            }
            return Ok(k.id.clone());
        }
        let ObjRef::Id(id) = r else {
            return Err(sw::NOT_FOUND);
        };
        if self.store.pubs.len() >= MAX_PUBLIC_KEYS {
            return Err(sw::NO_MEMORY);
        }
        self.store.pubs.push(PublicKey {
            id: id.clone(),
            label: Vec::new(),
            usage: USAGE_GENERAL,
            q: None,
            volatile: true,
        });
        Ok(id)
    }

    pub(super) fn put_key_data(&mut self, ch: usize, cmd: &Command) -> Outcome {
        if !matches!(cmd.p1, 0x00 | 0x80) {
            return Err(sw::INCORRECT_P1P2);
        }
        let n = check_session_number(cmd.p2)?;
        let sessions = &mut self.channel(ch)?.sessions;
        let Some(Session::PutKey { pub_id, buf }) = sessions.get_mut(&(SessionKind::PutKey, n))
        else {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        };
        buf.extend_from_slice(&cmd.data);
        if cmd.p1 != 0x80 {
            return Ok(Response::ok(Vec::new()));
        }
        let (pub_id, buf) = (pub_id.clone(), std::mem::take(buf));
        sessions.remove(&(SessionKind::PutKey, n));
        let q = point_from_put(&buf)?;
        let key = self
            .store
            .public_mut(&ObjRef::Id(pub_id))
            .ok_or(sw::NOT_FOUND)?;
        key.q = Some(q);
        if !key.volatile {
            self.persist()?;
        }
        Ok(Response::ok(Vec::new()))
    }

    pub(super) fn compute_dh(&self, cmd: &Command) -> Outcome {
        require_p1p2_zero(cmd)?;
        let items = tlv::parse(&cmd.data).ok_or(sw::INCORRECT_DATA)?;
        let private = self
            .store
            .private(&ref_from(&items, 0x84, 0x74)?)
            .ok_or(sw::NOT_FOUND)?;
        let public = self
            .store
            .public(&ref_from(&items, 0x85, 0x75)?)
            .ok_or(sw::NOT_FOUND)?;
        let q = public.q.as_ref().ok_or(sw::CONDITIONS_NOT_SATISFIED)?;
        let secret = crypto::ecdh(&private.d, q).map_err(|_| sw::UNKNOWN)?;
        Ok(Response::ok(secret))
    }
}
