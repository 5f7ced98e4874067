//! In-process tests: APDU bytes in, response bytes out, no vpcd.

use super::*;
use crate::crypto;
use crate::hex;
use crate::provision::{self, Layout};
use crate::state::ObjRef;
use crate::tlv;
use openssl::sha::sha256;

const GSMA: &str = "A0000005590010";

fn layout() -> Layout {
    Layout {
        key_id: vec![0x01],
        pub_key_id: vec![0x01],
        key_label: b"DEVICE".to_vec(),
        pub_key_label: b"DEVICE".to_vec(),
        cert_id: vec![0x02],
        cert_label: b"DEVICE-CERT".to_vec(),
    }
}

fn card_with(cfg: Config, l: &Layout) -> Applet {
    let mut store = Store::volatile();
    provision::provision(&mut store, l, None).unwrap();
    Applet::new(cfg, store)
}

fn card(cfg: Config) -> Applet {
    card_with(cfg, &layout())
}

/// Sends hex, returns (data, sw).
fn send(a: &mut Applet, apdu: &str) -> (Vec<u8>, u16) {
    send_raw(a, &hex::decode(apdu).unwrap())
}

fn send_raw(a: &mut Applet, apdu: &[u8]) -> (Vec<u8>, u16) {
    let mut r = a.process(apdu);
    assert!(r.len() >= 2, "response without status word");
    let sw = u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]);
    r.truncate(r.len() - 2);
    (r, sw)
}

fn apdu(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8], le: Option<u8>) -> Vec<u8> {
    let mut v = vec![cla, ins, p1, p2];
    if !data.is_empty() {
        v.push(data.len() as u8);
        v.extend_from_slice(data);
    }
    v.extend(le);
    v
}

/// Opens a channel and selects the applet on it; returns the channel.
fn open_and_select(a: &mut Applet) -> u8 {
    let (d, sw) = send(a, "0070000001");
    assert_eq!(sw, 0x9000);
    let ch = d[0];
    let sel = format!("{ch:02X}A4040007{GSMA}");
    assert_eq!(send(a, &sel).1, 0x9000);
    ch
}

fn sign_init_data(key: &[u8], mode: u8, hash: [u8; 2]) -> Vec<u8> {
    let mut d = tlv::encode(0x84, key);
    d.extend([
        0xA1, 0x01, mode, 0x91, 0x02, hash[0], hash[1], 0x92, 0x01, 0x04,
    ]);
    d
}

fn device_point(a: &Applet) -> Vec<u8> {
    a.store()
        .public(&ObjRef::Id(vec![1]))
        .unwrap()
        .q
        .clone()
        .unwrap()
}

/// INIT + UPDATE (mode 03, SHA-256) on `cla`; returns the response data.
fn sign(a: &mut Applet, cla: u8, digest: &[u8; 32]) -> Vec<u8> {
    let init = apdu(cla, 0x2A, 0, 1, &sign_init_data(&[1], 3, [0, 1]), None);
    assert_eq!(send_raw(a, &init).1, 0x9000);
    let upd = apdu(cla, 0x2B, 0x80, 1, &tlv::encode(0x9E, digest), None);
    let (d, sw) = send_raw(a, &upd);
    assert_eq!(sw, 0x9000);
    d
}

#[test]
fn channels_and_select() {
    let mut a = card(Config::default());
    // Applet commands before selection: 6D00.
    assert_eq!(send(&mut a, "00CB000000").1, 0x6D00);
    assert_eq!(send(&mut a, "00A4040007A0000000000000").1, 0x6A82);
    // Basic channel selection works.
    assert_eq!(send(&mut a, &format!("00A4040007{GSMA}")).1, 0x9000);
    assert_eq!(send(&mut a, "00CB000000").1, 0x9000);
    let ch = open_and_select(&mut a);
    assert_eq!(ch, 1);
    assert_eq!(send(&mut a, "0070000001"), (vec![2], 0x9000));
    // Channel 2 was opened from the basic channel: nothing selected.
    assert_eq!(send(&mut a, "02CB000000").1, 0x6D00);
    assert_eq!(send(&mut a, "0070800200").1, 0x9000);
    assert_eq!(send(&mut a, "02CB000000").1, 0x6881);
    assert_eq!(send(&mut a, "00708002").1, 0x6881);
    assert_eq!(send(&mut a, "0070800100").1, 0x9000);
    assert_eq!(send(&mut a, "01CB000000").1, 0x6881);
    // Channels run out after 3.
    for n in 1..=3 {
        assert_eq!(send(&mut a, "0070000001"), (vec![n], 0x9000));
    }
    assert_eq!(send(&mut a, "0070000001").1, 0x6A81);
    // Reset closes them all.
    a.reset();
    assert_eq!(send(&mut a, "01CB000000").1, 0x6881);
    assert_eq!(send(&mut a, "00CB000000").1, 0x6D00);
}

#[test]
fn close_without_le() {
    let mut a = card(Config::default());
    open_and_select(&mut a);
    assert_eq!(send(&mut a, "00708001").1, 0x9000);
}

#[test]
fn configurable_aids() {
    let cfg = Config {
        aids: vec![hex::decode("A0000000305 3F1240177010149534 1").unwrap()],
        ..Config::default()
    };
    let mut a = card(cfg);
    assert_eq!(send(&mut a, &format!("00A4040007{GSMA}")).1, 0x6A82);
    assert_eq!(
        send(&mut a, "00A404000FA00000003053F124017701014953").1,
        0x6700
    );
    assert_eq!(
        send(&mut a, "00A404000FA00000003053F12401770101495341").1,
        0x9000
    );
}

#[test]
fn the_thales_aid_alone() {
    let cfg = Config {
        aids: vec![THALES_AID.to_vec()],
        ..Config::default()
    };
    let mut a = card(cfg);
    assert_eq!(send(&mut a, "0070000001"), (vec![1], 0x9000));
    assert_eq!(send(&mut a, &format!("01A4040007{GSMA}")).1, 0x6A82);
    let select = apdu(0x01, 0xA4, 4, 0, &THALES_AID, None);
    assert_eq!(send_raw(&mut a, &select).1, 0x9000);
    let (info, sw) = send(&mut a, "01CB000000");
    assert_eq!(sw, 0x9000);
    let items = tlv::parse(&info).unwrap();
    assert_eq!(tlv::find(&items, 0x11), Some(&THALES_AID[..]));
    let digest = sha256(b"thales");
    let rs = sign(&mut a, 0x01, &digest);
    assert!(crypto::verify_digest(&device_point(&a), &digest, &rs[2..]));
}

/// Channels 4..=19 take the further interindustry class bytes 40..4F (applet commands
/// C0..CF in the proprietary style).
#[test]
fn nineteen_logical_channels_with_further_class_bytes() {
    let cfg = Config {
        channels: MAX_CHANNELS,
        ..Config::default()
    };
    let mut a = card(cfg);
    for n in 1..=19u8 {
        assert_eq!(send(&mut a, "0070000001"), (vec![n], 0x9000), "channel {n}");
    }
    assert_eq!(send(&mut a, "0070000001").1, 0x6A81, "all 19 are open");
    for (ch, cla) in [(4u8, 0x40u8), (11, 0x47), (19, 0x4F)] {
        assert_eq!(send_raw(&mut a, &[cla, 0xCB, 0, 0, 0]).1, 0x6D00, "{ch}");
        let select = apdu(cla, 0xA4, 4, 0, &GSMA_AID, None);
        assert_eq!(send_raw(&mut a, &select).1, 0x9000, "select on {ch}");
        let digest = sha256(&[ch]);
        let rs = sign(&mut a, cla, &digest);
        assert!(crypto::verify_digest(&device_point(&a), &digest, &rs[2..]));
    }
    // Each channel keeps its own selection: 18 (4E) was never selected.
    assert_eq!(send_raw(&mut a, &[0x4E, 0xCB, 0, 0, 0]).1, 0x6D00);
    // Secure messaging (b6) and chaining (b5) in a further class are refused.
    assert_eq!(send_raw(&mut a, &[0x6F, 0xCB, 0, 0, 0]).1, 0x6E00);
    assert_eq!(send_raw(&mut a, &[0x5F, 0xCB, 0, 0, 0]).1, 0x6E00);
    // Close 19 from the basic channel, and 4 from itself.
    assert_eq!(send(&mut a, "0070801300").1, 0x9000);
    assert_eq!(send_raw(&mut a, &[0x4F, 0xCB, 0, 0, 0]).1, 0x6881);
    assert_eq!(send(&mut a, "4070800000").1, 0x9000);
    assert_eq!(send_raw(&mut a, &[0x40, 0xCB, 0, 0, 0]).1, 0x6881);
    // The lowest free channel is given next; 20 is no channel.
    assert_eq!(send(&mut a, "0070000001"), (vec![4], 0x9000));
    assert_eq!(send(&mut a, "0070801400").1, 0x6A86);
}

#[test]
fn proprietary_class_on_channel_nineteen() {
    let cfg = Config {
        channels: MAX_CHANNELS,
        cla_style: ClaStyle::Proprietary,
        ..Config::default()
    };
    let mut a = card(cfg);
    assert_eq!(send(&mut a, "00700013").1, 0x9000);
    let select = apdu(0x4F, 0xA4, 4, 0, &GSMA_AID, None);
    assert_eq!(send_raw(&mut a, &select).1, 0x9000);
    assert_eq!(send_raw(&mut a, &[0x4F, 0xCB, 0, 0, 0]).1, 0x6E00);
    assert_eq!(send_raw(&mut a, &[0xCF, 0xCB, 0, 0, 0]).1, 0x9000);
    sign(&mut a, 0xCF, &[7; 32]);
}

#[test]
fn four_channels_by_default_and_none_on_request() {
    let mut a = card(Config::default());
    // Channel 4 does not exist on a default card.
    assert_eq!(send_raw(&mut a, &[0x40, 0xCB, 0, 0, 0]).1, 0x6881);
    assert_eq!(send(&mut a, "00700004").1, 0x6A86);
    let mut a = card(Config {
        channels: 1,
        ..Config::default()
    });
    assert_eq!(send(&mut a, "0070000001").1, 0x6881);
    assert_eq!(send(&mut a, &format!("00A4040007{GSMA}")).1, 0x9000);
    assert_eq!(send(&mut a, "00CB000000").1, 0x9000);
}

/// A separate layout: the public key is an object with its own id and label, and the
/// object list reports the two.
#[test]
fn separate_public_key_object() {
    let l = Layout {
        pub_key_id: vec![0x03],
        pub_key_label: b"DEVICE-PUB".to_vec(),
        ..layout()
    };
    let mut a = card_with(Config::default(), &l);
    let ch = open_and_select(&mut a);
    let (list, sw) = send_raw(&mut a, &[ch, 0xCB, 1, 0, 0]);
    assert_eq!(sw, 0x9000);
    let blocks = tlv::parse(&list).unwrap();
    let private = tlv::parse(blocks[0].1).unwrap();
    let public = tlv::parse(blocks[1].1).unwrap();
    assert_eq!(blocks[0].0, 0xC1);
    assert_eq!(tlv::find(&private, 0x84), Some(&[1u8][..]));
    assert_eq!(tlv::find(&private, 0x74), Some(&b"DEVICE"[..]));
    assert_eq!(blocks[1].0, 0xC2);
    assert_eq!(tlv::find(&public, 0x85), Some(&[3u8][..]));
    assert_eq!(tlv::find(&public, 0x75), Some(&b"DEVICE-PUB"[..]));
    // No public key under the private key's id or label.
    for name in [&[0x85, 1, 1][..], &tlv::encode(0x75, b"DEVICE")] {
        let read = apdu(ch, 0xCD, 0, 0, name, None);
        assert_eq!(send_raw(&mut a, &read).1, 0x6A82);
    }
    let (pubkey, sw) = send_raw(&mut a, &apdu(ch, 0xCD, 0, 0, &[0x85, 1, 3], None));
    assert_eq!(sw, 0x9000);
    let point = a.store().public(&ObjRef::Id(vec![3])).unwrap().q.clone();
    assert_eq!(Some(pubkey[6..].to_vec()), point);
    // The private key 01 signs for the public key 03.
    let digest = sha256(b"separate");
    let rs = sign(&mut a, ch, &digest);
    assert!(crypto::verify_digest(&point.unwrap(), &digest, &rs[2..]));
}

#[test]
fn cla_style_00() {
    let mut a = card(Config::default());
    let ch = open_and_select(&mut a);
    assert_eq!(send_raw(&mut a, &[ch, 0xCB, 0, 0, 0]).1, 0x9000);
    assert_eq!(send_raw(&mut a, &[0x80 | ch, 0xCB, 0, 0, 0]).1, 0x6E00);
    // Secure messaging or other classes are refused.
    assert_eq!(send_raw(&mut a, &[0x04 | ch, 0xCB, 0, 0, 0]).1, 0x6E00);
    assert_eq!(send_raw(&mut a, &[0xA0, 0xCB, 0, 0, 0]).1, 0x6E00);
    let rs = sign(&mut a, ch, &[1; 32]);
    assert_eq!(&rs[..2], &[0x33, 0x40]);
}

#[test]
fn cla_style_80() {
    let cfg = Config {
        cla_style: ClaStyle::Proprietary,
        ..Config::default()
    };
    let mut a = card(cfg);
    let ch = open_and_select(&mut a);
    assert_eq!(send_raw(&mut a, &[ch, 0xCB, 0, 0, 0]).1, 0x6E00);
    assert_eq!(send_raw(&mut a, &[0x80 | ch, 0xCB, 0, 0, 0]).1, 0x9000);
    // SELECT and MANAGE CHANNEL stay interindustry.
    let sel = format!("{:02X}A4040007{GSMA}", 0x80 | ch);
    assert_eq!(send(&mut a, &sel).1, 0x6E00);
    assert_eq!(send(&mut a, "8070000001").1, 0x6E00);
    sign(&mut a, 0x80 | ch, &[1; 32]);
}

#[test]
fn signatures_verify_with_openssl() {
    for (sig_len, prefix) in [
        (SigLen::Short, &[0x33, 0x40][..]),
        (SigLen::Long, &[0x33, 0x00, 0x40][..]),
    ] {
        let cfg = Config {
            sig_len,
            ..Config::default()
        };
        let mut a = card(cfg);
        let ch = open_and_select(&mut a);
        let digest = sha256(b"hello");
        let resp = sign(&mut a, ch, &digest);
        assert_eq!(resp.len(), prefix.len() + 64);
        assert!(resp.starts_with(prefix));
        let rs = &resp[prefix.len()..];
        assert!(crypto::verify_digest(&device_point(&a), &digest, rs));
        // The session ended with the signature: UPDATE again is refused.
        let upd = apdu(ch, 0x2B, 0x80, 1, &tlv::encode(0x9E, &digest), None);
        assert_eq!(send_raw(&mut a, &upd).1, 0x6985);
    }
}

#[test]
fn read_public_key_matches_store() {
    let mut a = card(Config::default());
    let ch = open_and_select(&mut a);
    let (d, sw) = send_raw(&mut a, &apdu(ch, 0xCD, 0, 0, &[0x85, 1, 1], Some(0)));
    assert_eq!(sw, 0x9000);
    assert_eq!(&d[..7], &[0x34, 0x45, 0x49, 0x43, 0x86, 0x41, 0x04]);
    assert_eq!(d[6..], device_point(&a)[..]);
    let by_label = apdu(ch, 0xCD, 0, 0, &tlv::encode(0x75, b"DEVICE"), None);
    assert_eq!(send_raw(&mut a, &by_label).0, d);
    let unknown = apdu(ch, 0xCD, 0, 0, &[0x85, 1, 9], None);
    assert_eq!(send_raw(&mut a, &unknown).1, 0x6A82);
}

#[test]
fn sign_with_sha384_and_label_and_session_0() {
    let mut a = card(Config::default());
    let ch = open_and_select(&mut a);
    let mut init = tlv::encode(0x74, b"DEVICE");
    init.extend([0xA1, 1, 3, 0x91, 2, 0, 2, 0x92, 1, 4]);
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0x2A, 0, 0, &init, None)).1,
        0x9000
    );
    // A SHA-256-sized digest for a SHA-384 session is refused...
    let short = apdu(ch, 0x2B, 0x80, 0, &tlv::encode(0x9E, &[0; 32]), None);
    assert_eq!(send_raw(&mut a, &short).1, 0x6A80);
    let digest = [7u8; 48];
    let upd = apdu(ch, 0x2B, 0x80, 0, &tlv::encode(0x9E, &digest), None);
    let (d, sw) = send_raw(&mut a, &upd);
    assert_eq!(sw, 0x9000);
    assert!(crypto::verify_digest(&device_point(&a), &digest, &d[2..]));
}

#[test]
fn full_text_mode_hashes_chunks() {
    let mut a = card(Config::default());
    let ch = open_and_select(&mut a);
    let init = apdu(ch, 0x2A, 0, 1, &sign_init_data(&[1], 1, [0, 1]), None);
    assert_eq!(send_raw(&mut a, &init).1, 0x9000);
    let more = apdu(ch, 0x2B, 0x00, 1, &tlv::encode(0x9E, b"hello, "), None);
    assert_eq!(send_raw(&mut a, &more), (vec![], 0x9000));
    let last = apdu(ch, 0x2B, 0x80, 1, &tlv::encode(0x9E, b"world"), None);
    let (d, sw) = send_raw(&mut a, &last);
    assert_eq!(sw, 0x9000);
    let digest = sha256(b"hello, world");
    assert!(crypto::verify_digest(&device_point(&a), &digest, &d[2..]));
}

#[test]
fn session_errors() {
    let mut a = card(Config::default());
    let ch = open_and_select(&mut a);
    let upd = apdu(ch, 0x2B, 0x80, 1, &tlv::encode(0x9E, &[0; 32]), None);
    assert_eq!(send_raw(&mut a, &upd).1, 0x6985);
    let unknown = apdu(ch, 0x2A, 0, 1, &sign_init_data(&[9], 3, [0, 1]), None);
    assert_eq!(send_raw(&mut a, &unknown).1, 0x6A82);
    let bad_hash = apdu(ch, 0x2A, 0, 1, &sign_init_data(&[1], 3, [0, 3]), None);
    assert_eq!(send_raw(&mut a, &bad_hash).1, 0x6A80);
    let malformed = apdu(ch, 0x2A, 0, 1, &[0x84, 5, 1], None);
    assert_eq!(send_raw(&mut a, &malformed).1, 0x6A80);
    assert_eq!(send_raw(&mut a, &apdu(ch, 0x2A, 2, 1, &[], None)).1, 0x6A86);
    assert_eq!(send_raw(&mut a, &apdu(ch, 0x2A, 0, 9, &[], None)).1, 0x6A86);
    // An open session blocks a new INIT until it is closed.
    let init = apdu(ch, 0x2A, 0, 1, &sign_init_data(&[1], 3, [0, 1]), None);
    assert_eq!(send_raw(&mut a, &init).1, 0x9000);
    assert_eq!(send_raw(&mut a, &init).1, 0x6985);
    assert_eq!(send_raw(&mut a, &apdu(ch, 0x2A, 1, 1, &[], None)).1, 0x9000);
    assert_eq!(send_raw(&mut a, &init).1, 0x9000);
    // Closing twice is fine.
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0x2A, 1, 1, &[], Some(0))).1,
        0x9000
    );
    assert_eq!(send_raw(&mut a, &apdu(ch, 0x2A, 1, 1, &[], None)).1, 0x9000);
}

#[test]
fn verify_signature() {
    let mut a = card(Config::default());
    let ch = open_and_select(&mut a);
    let digest = sha256(b"msg");
    let rs = crypto::sign_digest(&a.store().privs[0].d.clone(), &digest).unwrap();
    let mut init = tlv::encode(0x85, &[1]);
    init.extend([0xA1, 1, 3, 0x91, 2, 0, 1, 0x92, 1, 4]);
    for long in [false, true] {
        for (dig, want) in [(digest, 0x9000), ([0u8; 32], 0x6D01)] {
            assert_eq!(
                send_raw(&mut a, &apdu(ch, 0x2C, 0, 1, &init, None)).1,
                0x9000
            );
            let mut data = tlv::encode(0x9E, &dig);
            data.extend(if long {
                vec![0x33, 0, 0x40]
            } else {
                vec![0x33, 0x40]
            });
            data.extend(&rs);
            assert_eq!(
                send_raw(&mut a, &apdu(ch, 0x2D, 0x80, 1, &data, None)).1,
                want
            );
        }
    }
}

#[test]
fn get_data_info_and_objects() {
    let mut a = card(Config::default());
    let ch = open_and_select(&mut a);
    let (info, sw) = send_raw(&mut a, &[ch, 0xCB, 0, 0, 0]);
    assert_eq!(sw, 0x9000);
    let items = tlv::parse(&info).unwrap();
    assert_eq!(tlv::find(&items, 0x11).unwrap(), hex::decode(GSMA).unwrap());
    assert_eq!(tlv::find(&items, 0xB2), Some(&[4u8][..]));
    let (list, sw) = send_raw(&mut a, &[ch, 0xCB, 1, 0, 0]);
    assert_eq!(sw, 0x9000);
    let blocks = tlv::parse(&list).unwrap();
    let tags: Vec<u8> = blocks.iter().map(|b| b.0).collect();
    assert_eq!(tags, vec![0xC1, 0xC2, 0xC3]);
    let key = tlv::parse(blocks[0].1).unwrap();
    assert_eq!(tlv::find(&key, 0x74), Some(&b"DEVICE"[..]));
    assert_eq!(tlv::find(&key, 0x84), Some(&[1u8][..]));
    assert_eq!(tlv::find(&key, 0x4B), Some(&[0x13u8][..]));
    let file = tlv::parse(blocks[2].1).unwrap();
    let size = a.store().files[0].data.len() as u16;
    assert_eq!(tlv::find(&file, 0x20), Some(&size.to_be_bytes()[..]));
    assert_eq!(tlv::find(&file, 0x21), Some(&[2u8][..]));
    // One object by id or label.
    let (one, sw) = send_raw(
        &mut a,
        &apdu(ch, 0xCB, 0xC3, 0, &tlv::encode(0x73, b"DEVICE-CERT"), None),
    );
    assert_eq!((one.as_slice(), sw), (blocks[2].1, 0x9000));
    let (one, _) = send_raw(&mut a, &apdu(ch, 0xCB, 0xC1, 0, &[0x84, 1, 1], None));
    assert_eq!(one, blocks[0].1);
    let (one, _) = send_raw(&mut a, &apdu(ch, 0xCB, 0xC2, 0, &[0x85, 1, 1], None));
    assert_eq!(one, blocks[1].1);
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0xCB, 0xC1, 0, &[0x84, 1, 7], None)).1,
        0x6A82
    );
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0xCB, 0xC4, 0, &[0x86, 1, 1], None)).1,
        0x6A82
    );
    assert_eq!(send_raw(&mut a, &[ch, 0xCB, 7, 0, 0]).1, 0x6A86);
    assert_eq!(send_raw(&mut a, &[ch, 0xCB, 1, 1, 0]).1, 0x6985);
}

#[test]
fn object_list_paging() {
    let cfg = Config {
        page_size: 40,
        ..Config::default()
    };
    let mut a = card(cfg);
    let ch = open_and_select(&mut a);
    let (full, _) = {
        let mut b = card(Config::default());
        std::mem::swap(&mut b.store, &mut a.store);
        let out = send(&mut b, &format!("00A4040007{GSMA}"));
        assert_eq!(out.1, 0x9000);
        let full = send(&mut b, "00CB010000");
        std::mem::swap(&mut b.store, &mut a.store);
        full
    };
    let (mut got, mut sw) = send_raw(&mut a, &[ch, 0xCB, 1, 0, 0]);
    assert_eq!(sw, 0x6300);
    let mut pages = 1;
    while sw == 0x6300 {
        let (d, s) = send_raw(&mut a, &[ch, 0xCB, 1, 1, 0]);
        assert!(d.len() <= 40);
        got.extend(d);
        sw = s;
        pages += 1;
    }
    assert_eq!(sw, 0x9000);
    assert!(pages >= 3);
    assert_eq!(got, full);
}

#[test]
fn read_file_in_chunks() {
    for past_end in [0x6A86, 0x6981] {
        let cfg = Config {
            read_past_end: past_end,
            ..Config::default()
        };
        let mut a = card(cfg);
        let ch = open_and_select(&mut a);
        let want = a.store().files[0].data.clone();
        let mut got = Vec::new();
        loop {
            let off = got.len() as u16;
            let [hi, lo] = off.to_be_bytes();
            let (d, sw) = send_raw(&mut a, &apdu(ch, 0xB0, hi, lo, &[0x83, 1, 2], Some(0x80)));
            if sw != 0x9000 {
                assert_eq!(sw, past_end);
                break;
            }
            assert!(!d.is_empty() && d.len() <= 0x80);
            got.extend(d);
        }
        assert_eq!(got, want);
        // Le 00 = 256 bytes; by label.
        let (d, _) = send_raw(
            &mut a,
            &apdu(ch, 0xB0, 0, 0, &tlv::encode(0x73, b"DEVICE-CERT"), Some(0)),
        );
        assert_eq!(d, want[..want.len().min(256)]);
        assert_eq!(
            send_raw(&mut a, &apdu(ch, 0xB0, 0, 0, &[0x83, 1, 3], Some(0))).1,
            0x6A82
        );
    }
}

#[test]
fn generic_errors() {
    let mut a = card(Config::default());
    let ch = open_and_select(&mut a);
    assert_eq!(send_raw(&mut a, &[ch, 0xEE, 0, 0]).1, 0x6D00);
    assert_eq!(send_raw(&mut a, &[ch, 0xCB]).1, 0x6700);
    assert_eq!(send_raw(&mut a, &[ch, 0xCD, 0, 0, 5, 0x85, 1]).1, 0x6700);
    assert_eq!(send_raw(&mut a, &[]).1, 0x6700);
    assert_eq!(send_raw(&mut a, &[ch, 0x84, 0, 0]).1, 0x6700);
    // Extended lengths parse.
    let (d, sw) = send_raw(&mut a, &[ch, 0xCD, 0, 0, 0, 0, 3, 0x85, 1, 1, 0, 0]);
    assert_eq!((d.len(), sw), (71, 0x9000));
    // GET RESPONSE with nothing pending (T=1).
    assert_eq!(send_raw(&mut a, &[ch, 0xC0, 0, 0, 0]).1, 0x6985);
}

#[test]
fn get_random() {
    let mut a = card(Config::default());
    let ch = open_and_select(&mut a);
    let (d, sw) = send_raw(&mut a, &[ch, 0x84, 0, 0, 0]);
    assert_eq!((d.len(), sw), (256, 0x9000));
    let (d2, _) = send_raw(&mut a, &[ch, 0x84, 0, 0, 0x10]);
    assert_eq!(d2.len(), 16);
    assert_ne!(d[..16], d2[..]);
}

#[test]
fn keygen_put_key_and_dh() {
    let mut a = card(Config::default());
    let ch = open_and_select(&mut a);
    let (d, sw) = send_raw(&mut a, &apdu(ch, 0xB9, 0, 0, &[0x84, 1, 5], None));
    assert_eq!(sw, 0x9000);
    assert_eq!(&d[..6], &[0x84, 1, 5, 0x85, 1, 5]);
    assert_eq!(&d[6..13], &[0x34, 0x45, 0x49, 0x43, 0x86, 0x41, 0x04]);
    let ours = d[12..].to_vec();
    // The new key signs.
    let init = apdu(ch, 0x2A, 0, 1, &sign_init_data(&[5], 3, [0, 1]), None);
    assert_eq!(send_raw(&mut a, &init).1, 0x9000);
    let digest = [3u8; 32];
    let upd = apdu(ch, 0x2B, 0x80, 1, &tlv::encode(0x9E, &digest), None);
    let (sig, _) = send_raw(&mut a, &upd);
    assert!(crypto::verify_digest(&ours, &digest, &sig[2..]));
    // A peer key goes into a new volatile object, then ECDH.
    let (peer_d, peer_q) = crypto::generate().unwrap();
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0x24, 0, 1, &[0x85, 1, 0x20], None)).1,
        0x9000
    );
    let body = objects::public_key_tlv(&peer_q);
    let (first, rest) = body.split_at(30);
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0xD8, 0x00, 1, first, None)).1,
        0x9000
    );
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0xD8, 0x80, 1, rest, None)).1,
        0x9000
    );
    assert_eq!(send_raw(&mut a, &apdu(ch, 0x24, 1, 1, &[], None)).1, 0x9000);
    let (secret, sw) = send_raw(
        &mut a,
        &apdu(ch, 0x46, 0, 0, &[0x84, 1, 5, 0x85, 1, 0x20], None),
    );
    assert_eq!(sw, 0x9000);
    assert_eq!(secret, crypto::ecdh(&peer_d, &ours).unwrap());
    // The card's own public key cannot be overwritten.
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0x24, 0, 1, &[0x85, 1, 1], None)).1,
        0x6985
    );
    // D8 without a session, and a point off the curve.
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0xD8, 0x80, 1, &body, None)).1,
        0x6985
    );
    send_raw(&mut a, &apdu(ch, 0x24, 0, 1, &[0x85, 1, 0x20], None));
    let mut bad = body.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0xD8, 0x80, 1, &bad, None)).1,
        0x6A80
    );
    // Volatile objects vanish at reset.
    a.reset();
    assert!(a.store().public(&ObjRef::Id(vec![0x20])).is_none());
}

#[test]
fn zariot_traces_t0() {
    let l = Layout {
        key_id: b"001".to_vec(),
        pub_key_id: b"002".to_vec(),
        ..layout()
    };
    let cfg = Config {
        cla_style: ClaStyle::Proprietary,
        sig_len: SigLen::Long,
        t0: true,
        ..Config::default()
    };
    let mut a = card_with(cfg, &l);
    assert_eq!(open_and_select(&mut a), 1);
    assert_eq!(send(&mut a, "81B9000005840330303 1").1, 0x6151);
    let (d, sw) = send(&mut a, "81C0000051");
    assert_eq!(sw, 0x9000);
    assert_eq!(hex::encode(&d[..17]), "8403303031850330303234454943864104");
    assert_eq!(d.len(), 0x51);
    let q = d[16..].to_vec();
    let init = "812A00010F840330303 1A1010391020001920104";
    assert_eq!(send(&mut a, init), (vec![], 0x9000));
    let digest = sha256(b"zariot");
    let upd = format!("812B8001229E20{}", hex::encode(&digest));
    assert_eq!(send(&mut a, &upd).1, 0x6143);
    let (d, sw) = send(&mut a, "81C0000043");
    assert_eq!(sw, 0x9000);
    assert_eq!(&d[..3], &[0x33, 0x00, 0x40]);
    assert!(crypto::verify_digest(&q, &digest, &d[3..]));
}

#[test]
fn t0_get_response_in_parts_and_6c() {
    let cfg = Config {
        t0: true,
        ..Config::default()
    };
    let mut a = card(cfg);
    let ch = open_and_select(&mut a);
    let read = apdu(ch, 0xCD, 0, 0, &[0x85, 1, 1], None);
    assert_eq!(send_raw(&mut a, &read).1, 0x6147);
    let (d1, sw) = send_raw(&mut a, &[ch, 0xC0, 0, 0, 0x40]);
    assert_eq!((d1.len(), sw), (0x40, 0x6107));
    let (d2, sw) = send_raw(&mut a, &[ch, 0xC0, 0, 0, 0x07]);
    assert_eq!((d2.len(), sw), (7, 0x9000));
    assert_eq!(send_raw(&mut a, &[ch, 0xC0, 0, 0, 0x07]).1, 0x6985);
    // Le shorter than the data: 6Cxx; then the right Le works.
    assert_eq!(
        send_raw(&mut a, &apdu(ch, 0xCD, 0, 0, &[0x85, 1, 1], Some(0x10))).1,
        0x6C47
    );
    // Another command discards pending data.
    assert_eq!(send_raw(&mut a, &read).1, 0x6147);
    // Case 2 with the exact Le: data comes directly.
    let (d, sw) = send_raw(&mut a, &[ch, 0x84, 0, 0, 8]);
    assert_eq!((d.len(), sw), (8, 0x9000));
    assert_eq!(send_raw(&mut a, &[ch, 0xC0, 0, 0, 8]).1, 0x6985);
    // Case 2 with a longer Le: 61xx.
    let (d, sw) = send_raw(&mut a, &[ch, 0xCB, 0, 0, 0]);
    assert!(d.is_empty() && sw >> 8 == 0x61);
}

#[test]
fn state_persists_across_reload() {
    let dir = std::env::temp_dir().join(format!("iotsafe-sim-applet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("card.state");
    let _ = std::fs::remove_file(&path);
    let mut store = Store::open(&path).unwrap();
    provision::provision(&mut store, &layout(), None).unwrap();
    store.save().unwrap();
    let mut a = Applet::new(Config::default(), store);
    let ch = open_and_select(&mut a);
    sign(&mut a, ch, &[9; 32]);
    let (d, _) = send_raw(&mut a, &apdu(ch, 0xB9, 0, 0, &[0x84, 1, 7], None));
    let before_q = device_point(&a);
    let cert = a.store().files[0].data.clone();
    drop(a);
    let mut b = Applet::new(Config::default(), Store::open(&path).unwrap());
    assert_eq!(device_point(&b), before_q);
    assert_eq!(b.store().files[0].data, cert);
    assert_eq!(b.store().privs[0].sign_count, 1);
    let ch = open_and_select(&mut b);
    let (q7, _) = send_raw(&mut b, &apdu(ch, 0xCD, 0, 0, &[0x85, 1, 7], None));
    assert_eq!(q7, d[6..]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_input_never_panics() {
    let cfgs = [
        Config::default(),
        Config {
            t0: true,
            cla_style: ClaStyle::Proprietary,
            page_size: 16,
            ..Config::default()
        },
    ];
    for cfg in cfgs {
        let mut a = card(cfg);
        send(&mut a, &format!("00A4040007{GSMA}"));
        open_and_select(&mut a);
        // A small deterministic generator: every INS, every CLA style,
        // random lengths and bodies.
        let mut x: u32 = 0x1234_5678;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for i in 0..20_000u32 {
            let len = (next() % 80) as usize;
            let mut raw: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if raw.len() >= 2 {
                raw[0] &= 0x83;
                raw[1] = [
                    0x84, 0xCB, 0xB0, 0xCD, 0x2A, 0x2B, 0x2C, 0x2D, 0xB9, 0x24, 0xD8, 0x46, 0xC0,
                    0x70, 0xA4,
                ][i as usize % 15];
            }
            if raw.len() >= 5 && next() % 2 == 0 {
                raw[4] = (raw.len() - 5) as u8; // consistent Lc, so the body is parsed
            }
            let r = a.process(&raw);
            assert!(r.len() >= 2);
        }
    }
}

#[test]
fn signature_counters_are_saved_at_reset() {
    let dir = std::env::temp_dir().join(format!("iotsafe-sim-counters-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("card.state");
    let _ = std::fs::remove_file(&path);
    let mut store = Store::open(&path).unwrap();
    provision::provision(&mut store, &layout(), None).unwrap();
    store.save().unwrap();
    let mut a = Applet::new(Config::default(), store);
    let ch = open_and_select(&mut a);
    sign(&mut a, ch, &[1; 32]);
    sign(&mut a, ch, &[2; 32]);
    let saved = |path: &std::path::Path| Store::open(path).unwrap().privs[0].sign_count;
    assert_eq!(saved(&path), 0, "not written per signature");
    a.reset();
    assert_eq!(saved(&path), 2, "written at reset (power-off, exit)");
    std::fs::remove_dir_all(&dir).unwrap();
}
