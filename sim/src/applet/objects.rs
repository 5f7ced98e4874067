//! Read-only commands: GET RANDOM, GET DATA, READ FILE, READ PUBLIC KEY.

use super::{Applet, Outcome};
use crate::apdu::{sw, Command, Response};
use crate::crypto;
use crate::state::{File, ObjRef, PrivateKey, PublicKey};
use crate::tlv;

/// Capacities advertised in the application info and enforced on create.
pub const MAX_FILES: usize = 8;
pub const MAX_PRIVATE_KEYS: usize = 4;
pub const MAX_PUBLIC_KEYS: usize = 8;
pub const MAX_SESSIONS: u8 = 4;
/// Largest GET RANDOM answer.
const MAX_RANDOM: usize = 1024;

/// Object functions (tag 61): sign, keygen, key agreement.
const FN_PRIVATE: u8 = 0x01 | 0x02 | 0x04;
const FN_PUBLIC: u8 = 0x01 | 0x04;
/// Hash algorithms bitmap (tag 91): SHA-256, SHA-384, SHA-512.
const HASHES: [u8; 2] = [0x00, 0x07];
/// Signature algorithms (tag 92): ECDSA.
const SIG_ECDSA: u8 = 0x04;

pub fn get_random(cmd: &Command) -> Outcome {
    if (cmd.p1, cmd.p2) != (0, 0) {
        return Err(sw::INCORRECT_P1P2);
    }
    // Capped so an extended Le cannot ask for more than a vpcd frame holds.
    let n = cmd.le.ok_or(sw::WRONG_LENGTH)?.min(MAX_RANDOM);
    let mut buf = vec![0u8; n];
    openssl::rand::rand_bytes(&mut buf).map_err(|_| sw::UNKNOWN)?;
    Ok(Response::ok(buf))
}

/// `34 len { 49 len { 86 len 04 X Y } }`, the public key container.
pub fn public_key_tlv(q: &[u8]) -> Vec<u8> {
    tlv::encode(0x34, &tlv::encode(0x49, &tlv::encode(0x86, q)))
}

/// Reads an object reference from command data: the id tag or the label
/// tag must be present and non-empty.
pub fn obj_ref(data: &[u8], id_tag: u8, label_tag: u8) -> Result<ObjRef, u16> {
    let items = tlv::parse(data).ok_or(sw::INCORRECT_DATA)?;
    ref_from(&items, id_tag, label_tag)
}

pub fn ref_from(items: &[(u8, &[u8])], id_tag: u8, label_tag: u8) -> Result<ObjRef, u16> {
    match (tlv::find(items, id_tag), tlv::find(items, label_tag)) {
        (Some(id), _) if !id.is_empty() => Ok(ObjRef::Id(id.to_vec())),
        (_, Some(l)) if !l.is_empty() => Ok(ObjRef::Label(l.to_vec())),
        _ => Err(sw::INCORRECT_DATA),
    }
}

fn put_label(out: &mut Vec<u8>, tag: u8, label: &[u8]) {
    if !label.is_empty() {
        tlv::put(out, tag, label);
    }
}

fn private_attrs(k: &PrivateKey) -> Vec<u8> {
    let mut a = Vec::new();
    put_label(&mut a, 0x74, &k.label);
    tlv::put(&mut a, 0x84, &k.id);
    tlv::put(&mut a, 0x4A, &[0x01]);
    tlv::put(&mut a, 0x4B, &[crypto::curve().key_type(false)]);
    tlv::put(&mut a, 0x4E, &[k.usage]);
    tlv::put(&mut a, 0x61, &[FN_PRIVATE]);
    tlv::put(&mut a, 0x91, &HASHES);
    tlv::put(&mut a, 0x92, &[SIG_ECDSA]);
    a
}

fn public_attrs(k: &PublicKey) -> Vec<u8> {
    let kind = crypto::curve().key_type(k.volatile);
    let mut a = Vec::new();
    put_label(&mut a, 0x75, &k.label);
    tlv::put(&mut a, 0x85, &k.id);
    tlv::put(&mut a, 0x4A, &[0x01]);
    tlv::put(&mut a, 0x4B, &[kind]);
    tlv::put(&mut a, 0x4E, &[k.usage]);
    tlv::put(&mut a, 0x61, &[FN_PUBLIC]);
    tlv::put(&mut a, 0x91, &HASHES);
    tlv::put(&mut a, 0x92, &[SIG_ECDSA]);
    a
}

/// A file's attributes; `announced_size` replaces the size (tag 20) when set.
fn file_attrs(f: &File, announced_size: Option<&[u8]>) -> Vec<u8> {
    let mut a = Vec::new();
    put_label(&mut a, 0x73, &f.label);
    tlv::put(&mut a, 0x83, &f.id);
    let size = u16::try_from(f.data.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes();
    tlv::put(&mut a, 0x20, announced_size.unwrap_or(&size));
    tlv::put(&mut a, 0x21, &[f.usage]);
    a
}

/// Cuts an object list into pages of whole blocks (a single block larger
/// than a page is cut bytewise). Returns (this page, the rest).
fn split_page(list: &[u8], page: usize) -> (Vec<u8>, Vec<u8>) {
    if list.len() <= page {
        return (list.to_vec(), Vec::new());
    }
    let mut cut = 0;
    // Every block of our own list is well formed, so the walk never fails.
    if let Some(blocks) = tlv::parse(list) {
        for (_, v) in blocks {
            let end = cut + tlv::encoded_len(v.len());
            if end > page {
                break;
            }
            cut = end;
        }
    }
    if cut == 0 {
        cut = page;
    }
    (list[..cut].to_vec(), list[cut..].to_vec())
}

impl Applet {
    pub(super) fn get_data(&mut self, ch: usize, cmd: &Command) -> Outcome {
        match (cmd.p1, cmd.p2) {
            (0x00, 0x00) => Ok(Response::ok(self.app_info())),
            (0x01, 0x00) => {
                let list = self.object_list();
                self.list_page(ch, list)
            }
            (0x01, 0x01) => {
                let rest = self.channel(ch)?.list_rest.take();
                self.list_page(ch, rest.ok_or(sw::CONDITIONS_NOT_SATISFIED)?)
            }
            (0xC1..=0xC4, 0x00) => self.one_object(cmd),
            _ => Err(sw::INCORRECT_P1P2),
        }
    }

    fn app_info(&self) -> Vec<u8> {
        let mut a = Vec::new();
        tlv::put(&mut a, 0x10, &[0x01, 0x00]);
        tlv::put(&mut a, 0x11, &self.cfg.aids[0]);
        tlv::put(&mut a, 0xB1, &[MAX_FILES as u8]);
        tlv::put(&mut a, 0xB2, &[MAX_PRIVATE_KEYS as u8]);
        tlv::put(&mut a, 0xB3, &[MAX_PUBLIC_KEYS as u8]);
        tlv::put(&mut a, 0xB4, &[0x00]);
        tlv::put(&mut a, 0x90, &[FN_PRIVATE]);
        tlv::put(&mut a, 0x91, &HASHES);
        tlv::put(&mut a, 0x92, &[SIG_ECDSA]);
        tlv::put(&mut a, 0x93, &[0x01]); // key agreement: ECDH
        tlv::put(&mut a, 0x94, &[0x00]); // key derivation: none
        tlv::put(&mut a, 0xB7, &[MAX_SESSIONS]);
        a
    }

    fn object_list(&self) -> Vec<u8> {
        let s = &self.store;
        let mut out = Vec::new();
        s.privs
            .iter()
            .for_each(|k| tlv::put(&mut out, 0xC1, &private_attrs(k)));
        s.pubs
            .iter()
            .for_each(|k| tlv::put(&mut out, 0xC2, &public_attrs(k)));
        s.files.iter().for_each(|f| {
            tlv::put(
                &mut out,
                0xC3,
                &file_attrs(f, self.cfg.file_size.as_deref()),
            )
        });
        out
    }

    fn list_page(&mut self, ch: usize, list: Vec<u8>) -> Outcome {
        let (page, rest) = split_page(&list, self.cfg.page_size.max(1));
        let more = !rest.is_empty();
        self.channel(ch)?.list_rest = more.then_some(rest);
        Ok(Response {
            data: page,
            sw: if more { sw::MORE_DATA } else { sw::OK },
        })
    }

    fn one_object(&self, cmd: &Command) -> Outcome {
        let s = &self.store;
        let attrs = match cmd.p1 {
            0xC1 => private_attrs(
                s.private(&obj_ref(&cmd.data, 0x84, 0x74)?)
                    .ok_or(sw::NOT_FOUND)?,
            ),
            0xC2 => public_attrs(
                s.public(&obj_ref(&cmd.data, 0x85, 0x75)?)
                    .ok_or(sw::NOT_FOUND)?,
            ),
            0xC3 => file_attrs(
                s.file(&obj_ref(&cmd.data, 0x83, 0x73)?)
                    .ok_or(sw::NOT_FOUND)?,
                self.cfg.file_size.as_deref(),
            ),
            _ => return Err(sw::NOT_FOUND), // no secret keys on this card
        };
        Ok(Response::ok(attrs))
    }

    pub(super) fn read_file(&self, cmd: &Command) -> Outcome {
        let file = self
            .store
            .file(&obj_ref(&cmd.data, 0x83, 0x73)?)
            .ok_or(sw::NOT_FOUND)?;
        let offset = u16::from_be_bytes([cmd.p1, cmd.p2]) as usize;
        if offset >= file.data.len() {
            return Err(self.cfg.read_past_end);
        }
        let n = cmd.le.unwrap_or(256).min(file.data.len() - offset);
        Ok(Response::ok(file.data[offset..offset + n].to_vec()))
    }

    pub(super) fn read_public_key(&self, cmd: &Command) -> Outcome {
        if (cmd.p1, cmd.p2) != (0, 0) {
            return Err(sw::INCORRECT_P1P2);
        }
        let key = self
            .store
            .public(&obj_ref(&cmd.data, 0x85, 0x75)?)
            .ok_or(sw::NOT_FOUND)?;
        let q = key.q.as_ref().ok_or(sw::CONDITIONS_NOT_SATISFIED)?;
        Ok(Response::ok(public_key_tlv(q)))
    }
}
