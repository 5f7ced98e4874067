//! An open session with the IoT SAFE applet and the commands it understands.
//!
//! The applet is selected once, on a logical channel that stays open for the life of the
//! session, so that a steady-state ECDSA signature costs exactly two APDUs (COMPUTE SIGNATURE
//! INIT and UPDATE). Every operation runs inside one exclusive [`Link`] (a PC/SC transaction),
//! and an operation interrupted by a card reset or re-insertion is retried once on a freshly
//! selected applet.

use super::apdu::{exchange, Command, Response};
use super::ecdsa::{self, HashAlg};
use super::error::{Error, Result};
use super::objects::{
    parse_object_list, AppInfo, Curve, ObjectInfo, ObjectKind, ObjectRef, PublicKey,
};
use super::tlv;
use super::transport::{modem, pcsc, ChannelOpening, Link, Transport};
use iotsafe_hex as hex;

/// The GSMA IoT SAFE AID (most deployed applets).
pub const AID_GSMA: &[u8] = &[0xA0, 0x00, 0x00, 0x05, 0x59, 0x00, 0x10];
/// The Thales IoT SAFE applet.
pub const AID_THALES: &[u8] = &[
    0xA0, 0x00, 0x00, 0x00, 0x30, 0x53, 0xF1, 0x24, 0x01, 0x77, 0x01, 0x01, 0x49, 0x53, 0x41,
];
/// An early CIRA/TELUS deployment.
pub const AID_CIRA: &[u8] = &[0xA0, 0x00, 0x00, 0x02, 0x48, 0x04, 0x00];

mod ins {
    pub const MANAGE_CHANNEL: u8 = 0x70;
    pub const SELECT: u8 = 0xA4;
    pub const GET_RANDOM: u8 = 0x84;
    pub const GET_DATA: u8 = 0xCB;
    pub const READ_FILE: u8 = 0xB0;
    pub const READ_PUBLIC_KEY: u8 = 0xCD;
    pub const SIGN_INIT: u8 = 0x2A;
    pub const SIGN_UPDATE: u8 = 0x2B;
    pub const VERIFY_INIT: u8 = 0x2C;
    pub const VERIFY_UPDATE: u8 = 0x2D;
    pub const GENERATE_KEY_PAIR: u8 = 0xB9;
    pub const PUT_PUBLIC_KEY_INIT: u8 = 0x24;
    pub const PUT_PUBLIC_KEY_UPDATE: u8 = 0xD8;
    pub const COMPUTE_DH: u8 = 0x46;
}

/// P1 of a session INIT: open, or close the session.
const SESSION_OPEN: u8 = 0x00;
const SESSION_CLOSE: u8 = 0x01;
/// P1 of an UPDATE that carries the last block.
const LAST_BLOCK: u8 = 0x80;
const MORE_BLOCKS: u8 = 0x00;
/// Message bytes per UPDATE in full-text mode (fits a short APDU with its TLV header).
const MESSAGE_BLOCK: usize = 240;
/// The object list is paged with SW 6300; a card that never ends must not hang the host.
const MAX_LIST_PAGES: usize = 32;
const READ_STEP: usize = 256;
/// Largest file READ FILE reads: a certificate file holds a few KiB (a device certificate
/// with a short chain). A larger size (tag 20) is refused before anything is allocated or
/// read, so a broken or hostile card cannot exhaust the host's memory or time.
pub const MAX_FILE_SIZE: usize = 16 * 1024;
/// Largest public key point accepted from the card: `04 X Y` of a 521-bit curve.
const MAX_POINT: usize = 1 + 2 * 66;
/// Most random bytes one [`Applet::random`] call returns (256 GET RANDOMs): a caller's
/// count is never an allocation size by itself.
pub const MAX_RANDOM: usize = 64 * 1024;

/// Which class byte the applet expects on its proprietary commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaStyle {
    /// `0x0n` (Orange, Thales).
    #[default]
    Interindustry,
    /// `0x8n` (wolfSSL, ZARIOT).
    Proprietary,
}

impl ClaStyle {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "00" | "0" => Some(ClaStyle::Interindustry),
            "80" => Some(ClaStyle::Proprietary),
            _ => None,
        }
    }

    /// The name [`ClaStyle::from_name`] reads.
    pub fn name(self) -> &'static str {
        match self {
            ClaStyle::Interindustry => "00",
            ClaStyle::Proprietary => "80",
        }
    }
}

/// Where the applet is selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelMode {
    /// A logical channel of our own (MANAGE CHANNEL), falling back to the basic channel when
    /// the card has none to give.
    #[default]
    Logical,
    /// The basic channel 0.
    Basic,
}

impl ChannelMode {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "logical" => Some(ChannelMode::Logical),
            "basic" => Some(ChannelMode::Basic),
            _ => None,
        }
    }

    /// The name [`ChannelMode::from_name`] reads.
    pub fn name(self) -> &'static str {
        match self {
            ChannelMode::Logical => "logical",
            ChannelMode::Basic => "basic",
        }
    }
}

/// How to find and address the applet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppletConfig {
    /// AIDs tried in order by SELECT.
    pub aids: Vec<Vec<u8>>,
    pub cla_style: ClaStyle,
    pub channel: ChannelMode,
    /// The session number (P2) of signing and PUT PUBLIC KEY sessions.
    pub session: u8,
}

impl Default for AppletConfig {
    fn default() -> Self {
        AppletConfig {
            aids: vec![AID_GSMA.to_vec(), AID_THALES.to_vec(), AID_CIRA.to_vec()],
            cla_style: ClaStyle::default(),
            channel: ChannelMode::default(),
            session: 0x01,
        }
    }
}

/// The applet as selected on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selected {
    channel: u8,
    aid: Vec<u8>,
    /// The transport opened the channel and selected the applet (a modem's AT+CCHO), and
    /// closes it; otherwise the session did both with MANAGE CHANNEL and SELECT.
    by_transport: bool,
}

/// A key pair made by GENERATE KEY PAIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    pub private_id: Vec<u8>,
    pub public_id: Vec<u8>,
    /// Uncompressed EC point `04 X Y`.
    pub point: Vec<u8>,
}

/// A session with the applet on one card.
pub struct Applet {
    transport: Box<dyn Transport>,
    config: AppletConfig,
    selected: Option<Selected>,
    /// Whether the last attempt made or confirmed the selection within its own link (then a
    /// refusal is the applet's, not a sign that our channel was taken away).
    selection_confirmed: bool,
}

impl Applet {
    /// Wraps a transport; nothing is sent until the first command.
    pub fn new(transport: Box<dyn Transport>, config: AppletConfig) -> Self {
        Applet {
            transport,
            config,
            selected: None,
            selection_confirmed: false,
        }
    }

    /// Opens the applet in the first PC/SC reader (whose name contains `reader_filter`, if
    /// given) that holds a card with one of the configured AIDs.
    pub fn open_pcsc(reader_filter: Option<&str>, config: AppletConfig) -> Result<Self> {
        let mut failures = Vec::new();
        for reader in pcsc::matching_readers(reader_filter)? {
            let attempt = pcsc::PcscTransport::connect(&reader).and_then(|transport| {
                let mut applet = Applet::new(Box::new(transport), config.clone());
                applet.select()?;
                Ok(applet)
            });
            match attempt {
                Ok(applet) => return Ok(applet),
                Err(e) => failures.push((reader, e)),
            }
        }
        // An empty slot says nothing when a card was found elsewhere: that card's answer is
        // the reason (an ordinary SIM is "no applet", not "no card" in the next slot).
        if failures
            .iter()
            .any(|(_, e)| !matches!(e, Error::CardAbsent { .. }))
        {
            failures.retain(|(_, e)| !matches!(e, Error::CardAbsent { .. }));
        }
        // A reader that could not be reached says more (and can be retried) than "no applet".
        if let Some(index) = failures.iter().position(|(_, e)| e.is_transport_failure()) {
            return Err(failures.swap_remove(index).1);
        }
        let tried: Vec<String> = failures
            .into_iter()
            .map(|(reader, e)| match e {
                Error::NoApplet(detail) => {
                    format!("the card in reader '{reader}' has none ({detail})")
                }
                other => format!("reader '{reader}': {other}"),
            })
            .collect();
        Err(Error::NoApplet(tried.join("; ")))
    }

    /// Opens the applet behind a modem's AT command port (`AT+CCHO`/`AT+CGLA` when the modem
    /// offers them, `AT+CSIM` otherwise).
    pub fn open_modem(path: &str, config: AppletConfig) -> Result<Self> {
        let transport = modem::ModemTransport::open(path, modem::DEFAULT_TIMEOUT)?;
        let mut applet = Applet::new(Box::new(transport), config);
        applet.select()?;
        Ok(applet)
    }

    /// The reader (or modem) the card sits in.
    pub fn reader(&self) -> &str {
        self.transport.name()
    }

    /// How APDUs reach the card, when the transport has a choice to report (see
    /// [`Transport::route`]).
    pub fn route(&self) -> Option<String> {
        self.transport.route()
    }

    /// The selected AID, once the applet has been selected.
    pub fn selected_aid(&self) -> Option<&[u8]> {
        self.selected.as_ref().map(|s| s.aid.as_slice())
    }

    /// Selects the applet now (otherwise the first command does it).
    pub fn select(&mut self) -> Result<()> {
        self.run(|_| Ok(()))
    }

    /// Keeps the transport's exclusive access (a PC/SC transaction) across back-to-back
    /// operations until [`Applet::release`]: a steady-state signature then costs its two
    /// APDUs and nothing more, and the selection is confirmed once per exclusive period.
    pub fn keep_between_operations(&mut self, keep: bool) {
        self.transport.keep_between_operations(keep);
    }

    /// Ends an exclusive access kept across operations, letting other hosts reach the card.
    pub fn release(&mut self) {
        self.transport.release();
    }

    /// Runs `op` on the selected applet inside one exclusive link; after a card reset or
    /// removal the transport is recovered and `op` runs once more on a fresh selection.
    fn run<R>(&mut self, mut op: impl FnMut(&mut Channel<'_>) -> Result<R>) -> Result<R> {
        match self.attempt_on_our_channel(&mut op) {
            Err(lost) if lost.is_connection_loss() => {
                self.selected = None;
                self.transport.recover().map_err(|_| lost.clone())?;
                match self.attempt(&mut op, false) {
                    // Lost again: the first loss is the cause worth reporting.
                    Err(again) if again.is_connection_loss() => Err(lost),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Runs `op` once; when the card answers as if our channel were closed or held another
    /// applet, and the selection was not confirmed in this same link, it is confirmed (or
    /// made anew) and `op` runs once more.
    fn attempt_on_our_channel<R>(
        &mut self,
        op: &mut impl FnMut(&mut Channel<'_>) -> Result<R>,
    ) -> Result<R> {
        match self.attempt(op, false) {
            Err(e) if !self.selection_confirmed && suggests_channel_taken(&e) => {
                self.attempt(op, true)
            }
            other => other,
        }
    }

    /// Runs `op` inside one link, selecting the applet first when needed: on the first use,
    /// at the start of each new exclusive period (other hosts may have closed or re-purposed
    /// our channel since the last one), and when `confirm` asks for it.
    fn attempt<R>(
        &mut self,
        op: &mut impl FnMut(&mut Channel<'_>) -> Result<R>,
        confirm: bool,
    ) -> Result<R> {
        let mut link = self.transport.link()?;
        self.selection_confirmed = true;
        let selected = match self.selected.take() {
            None => open_and_select(&mut *link, &self.config)?,
            Some(ours) if confirm || link.newly_acquired() => {
                confirm_selection(&mut *link, &self.config, ours)?
            }
            Some(ours) => {
                self.selection_confirmed = false;
                ours
            }
        };
        self.selected = Some(selected.clone());
        let cla = applet_cla(self.config.cla_style, selected.channel);
        let mut channel = Channel {
            link: &mut *link,
            cla,
        };
        op(&mut channel)
    }

    /// GET DATA: the applet's description of itself.
    pub fn info(&mut self) -> Result<AppInfo> {
        let data = self.run(|ch| {
            ch.call(
                "GET DATA (applet information)",
                None,
                Command::new(0, ins::GET_DATA, 0x00, 0x00).le(256),
            )
        })?;
        AppInfo::parse("GET DATA (applet information)", &data)
    }

    /// GET DATA: every object on the applet, following 6300 paging.
    pub fn objects(&mut self) -> Result<Vec<ObjectInfo>> {
        let what = "GET DATA (object list)";
        let data = self.run(|ch| {
            let mut all = Vec::new();
            let mut more = true;
            let mut p2 = 0x00;
            for _ in 0..MAX_LIST_PAGES {
                let response = ch.send(what, Command::new(0, ins::GET_DATA, 0x01, p2).le(256))?;
                more = response.sw == 0x6300;
                if !more && !response.is_ok() {
                    return Err(Error::from_status(what, response.sw));
                }
                all.extend(response.data);
                if !more {
                    break;
                }
                p2 = 0x01;
            }
            if more {
                return Err(Error::malformed(
                    what,
                    "the object list never ends (SW 6300)",
                ));
            }
            Ok(all)
        })?;
        parse_object_list(what, &data)
    }

    /// GET DATA: the attributes of one object.
    pub fn object(&mut self, kind: ObjectKind, object: &ObjectRef) -> Result<ObjectInfo> {
        let described = object.describe(kind);
        let what = format!("GET DATA ({described})");
        let data = self.run(|ch| {
            let command = Command::new(0, ins::GET_DATA, kind.list_tag(), 0x00)
                .data(object.encode(kind))
                .le(256);
            ch.call(&what, Some(&described), command)
        })?;
        // Some applets wrap the attributes in the kind's list block, as in the object list.
        let attributes = match tlv::parse_one(&what, &data) {
            Ok((block, [])) if block.tag == u16::from(kind.list_tag()) => block.value,
            _ => &data[..],
        };
        ObjectInfo::parse(&what, kind, attributes)
    }

    /// READ FILE: the whole file, in 256-byte steps; its size comes from the file's object.
    pub fn read_file(&mut self, file: &ObjectRef) -> Result<Vec<u8>> {
        let info = self.object(ObjectKind::File, file)?;
        let described = file.describe(ObjectKind::File);
        let size = info.size.ok_or_else(|| {
            Error::malformed(
                format!("GET DATA ({described})"),
                "the file has no size (tag 20)",
            )
        })?;
        if size > MAX_FILE_SIZE {
            return Err(Error::malformed(
                format!("GET DATA ({described})"),
                format!(
                    "the file announces {size} bytes (tag 20), more than the {MAX_FILE_SIZE} \
                     bytes a certificate file may have"
                ),
            ));
        }
        let what = format!("READ FILE ({described})");
        self.run(|ch| {
            // The size is the card's word: it bounds the reading (whose 16-bit offsets stop a
            // size too large), never an allocation.
            let mut content = Vec::with_capacity(size.min(READ_STEP));
            while content.len() < size {
                let offset = content.len();
                let [hi, lo] = u16::try_from(offset)
                    .map_err(|_| {
                        Error::Invalid(format!("{described} is larger than READ FILE can address"))
                    })?
                    .to_be_bytes();
                let step = (size - offset).min(READ_STEP);
                let command = Command::new(0, ins::READ_FILE, hi, lo)
                    .data(file.encode(ObjectKind::File))
                    .le(step);
                let chunk = ch.call(&what, Some(&described), command)?;
                if chunk.is_empty() || chunk.len() > step {
                    return Err(Error::malformed(
                        &what,
                        format!(
                            "{} bytes at offset {offset} of a {size}-byte file",
                            chunk.len()
                        ),
                    ));
                }
                content.extend(chunk);
            }
            Ok(content)
        })
    }

    /// READ PUBLIC KEY: the key's uncompressed EC point (`04 X Y`).
    pub fn read_public_key(&mut self, key: &ObjectRef) -> Result<Vec<u8>> {
        let described = key.describe(ObjectKind::PublicKey);
        let what = format!("READ PUBLIC KEY ({described})");
        let data = self.run(|ch| {
            let command =
                Command::new(0, ins::READ_PUBLIC_KEY, 0, 0).data(key.encode(ObjectKind::PublicKey));
            ch.call(&what, Some(&described), command)
        })?;
        parse_public_key(&what, &data)
    }

    /// The curve of a public key, as its attributes (key type, tag 4B) tell it. An applet that
    /// names no key type, or that refuses GET DATA for a single object, holds a P-256 key: the
    /// curve every IoT SAFE applet supports. (The point read from the card is checked to lie on
    /// that curve before use, so a wrong guess is an error, never a wrong key.)
    pub fn curve_of(&mut self, public: &ObjectRef) -> Result<Curve> {
        let info = match self.object(ObjectKind::PublicKey, public) {
            Ok(info) => info,
            Err(Error::Refused { .. }) => return Ok(Curve::default()),
            Err(e) => return Err(e),
        };
        match info.key_type {
            None => Ok(Curve::default()),
            Some(key_type) => Curve::from_key_type(key_type).ok_or_else(|| {
                Error::Invalid(format!(
                    "{} has key type {key_type:02X} ({}), not an EC curve this host supports",
                    public.describe(ObjectKind::PublicKey),
                    info.key_type_name().unwrap_or("unknown")
                ))
            }),
        }
    }

    /// A public key's curve and point: GET DATA for its attributes, then READ PUBLIC KEY.
    pub fn public_key(&mut self, public: &ObjectRef) -> Result<PublicKey> {
        let curve = self.curve_of(public)?;
        let point = self.read_public_key(public)?;
        Ok(PublicKey { curve, point })
    }

    /// COMPUTE SIGNATURE in mode "pad and sign": the card signs `digest` (computed by the
    /// host with `hash`) with the private key; returns a DER ECDSA signature. Two APDUs.
    pub fn sign_digest(
        &mut self,
        key: &ObjectRef,
        hash: HashAlg,
        digest: &[u8],
    ) -> Result<Vec<u8>> {
        check_digest(hash, digest)?;
        self.sign(key, hash, ecdsa::MODE_PAD_AND_SIGN, &[digest])
    }

    /// COMPUTE SIGNATURE in mode "full text": the card hashes `message` itself, sent in
    /// chained UPDATEs. For applets or policies that do not accept host-computed digests.
    pub fn sign_message(
        &mut self,
        key: &ObjectRef,
        hash: HashAlg,
        message: &[u8],
    ) -> Result<Vec<u8>> {
        let blocks: Vec<&[u8]> = if message.is_empty() {
            vec![message]
        } else {
            message.chunks(MESSAGE_BLOCK).collect()
        };
        self.sign(key, hash, ecdsa::MODE_FULL_TEXT, &blocks)
    }

    fn sign(
        &mut self,
        key: &ObjectRef,
        hash: HashAlg,
        mode: u8,
        blocks: &[&[u8]],
    ) -> Result<Vec<u8>> {
        let described = key.describe(ObjectKind::PrivateKey);
        let session = self.config.session;
        let init = signature_init_data(key.encode(ObjectKind::PrivateKey), mode, hash);
        let raw = self.run(|ch| {
            ch.call(
                &format!("COMPUTE SIGNATURE INIT ({described})"),
                Some(&described),
                Command::new(0, ins::SIGN_INIT, SESSION_OPEN, session).data(init.clone()),
            )?;
            let what = format!("COMPUTE SIGNATURE UPDATE ({described})");
            let signed = send_blocks(ch, &what, ins::SIGN_UPDATE, session, blocks)
                .and_then(|data| ecdsa::raw_from_response(&what, &data));
            if signed.as_ref().is_err_and(|e| !e.is_connection_loss()) {
                ch.close_session(ins::SIGN_INIT, session);
            }
            signed
        })?;
        Ok(ecdsa::der_from_raw(&raw))
    }

    /// VERIFY SIGNATURE with a public key on the card. `signature` is DER; true when valid.
    pub fn verify_digest(
        &mut self,
        key: &ObjectRef,
        hash: HashAlg,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool> {
        check_digest(hash, digest)?;
        let described = key.describe(ObjectKind::PublicKey);
        let session = self.config.session;
        let init = signature_init_data(
            key.encode(ObjectKind::PublicKey),
            ecdsa::MODE_PAD_AND_SIGN,
            hash,
        );
        let raw = ecdsa::raw_from_der(signature, 32)?;
        let mut update = tlv::encode(0x9E, digest);
        tlv::push(&mut update, u16::from(ecdsa::TAG_SIGNATURE), &raw);
        self.run(|ch| {
            ch.call(
                &format!("VERIFY SIGNATURE INIT ({described})"),
                Some(&described),
                Command::new(0, ins::VERIFY_INIT, SESSION_OPEN, session).data(init.clone()),
            )?;
            let what = format!("VERIFY SIGNATURE UPDATE ({described})");
            let response = ch.send(
                &what,
                Command::new(0, ins::VERIFY_UPDATE, LAST_BLOCK, session).data(update.clone()),
            )?;
            match response.sw {
                0x9000 => Ok(true),
                0x6D01 => Ok(false),
                sw => {
                    ch.close_session(ins::VERIFY_INIT, session);
                    Err(Error::from_status(what, sw))
                }
            }
        })
    }

    /// ECDH on the card: PUT PUBLIC KEY (the peer's point into `peer_slot`), then COMPUTE DH
    /// with the private key. Returns the raw shared secret (the X coordinate).
    pub fn compute_dh(
        &mut self,
        key: &ObjectRef,
        peer_slot: &ObjectRef,
        peer_point: &[u8],
    ) -> Result<Vec<u8>> {
        let described = key.describe(ObjectKind::PrivateKey);
        let slot = peer_slot.describe(ObjectKind::PublicKey);
        let session = self.config.session;
        let point = encode_public_key(peer_point);
        let mut dh = key.encode(ObjectKind::PrivateKey);
        dh.extend(peer_slot.encode(ObjectKind::PublicKey));
        self.run(|ch| {
            ch.call(
                &format!("PUT PUBLIC KEY INIT ({slot})"),
                Some(&slot),
                Command::new(0, ins::PUT_PUBLIC_KEY_INIT, SESSION_OPEN, session)
                    .data(peer_slot.encode(ObjectKind::PublicKey)),
            )?;
            let put = ch.call(
                &format!("PUT PUBLIC KEY UPDATE ({slot})"),
                None,
                Command::new(0, ins::PUT_PUBLIC_KEY_UPDATE, LAST_BLOCK, session)
                    .data(point.clone()),
            );
            if let Err(e) = put {
                if !e.is_connection_loss() {
                    ch.close_session(ins::PUT_PUBLIC_KEY_INIT, session);
                }
                return Err(e);
            }
            let what = format!("COMPUTE DH ({described})");
            let secret = ch.call(
                &what,
                Some(&described),
                Command::new(0, ins::COMPUTE_DH, 0, 0).data(dh.clone()),
            )?;
            if secret.is_empty() {
                return Err(Error::malformed(what, "empty shared secret"));
            }
            Ok(secret)
        })
    }

    /// GET RANDOM: `count` bytes from the card's generator.
    pub fn random(&mut self, count: usize) -> Result<Vec<u8>> {
        let what = "GET RANDOM";
        if count > MAX_RANDOM {
            return Err(Error::Invalid(format!(
                "{count} random bytes asked for: at most {MAX_RANDOM} per request"
            )));
        }
        self.run(|ch| {
            let mut out = Vec::with_capacity(count);
            while out.len() < count {
                let step = (count - out.len()).min(256);
                let chunk = ch.call(what, None, Command::new(0, ins::GET_RANDOM, 0, 0).le(step))?;
                if chunk.is_empty() {
                    return Err(Error::malformed(what, "no bytes returned"));
                }
                out.extend(chunk.into_iter().take(step));
            }
            Ok(out)
        })
    }

    /// GENERATE KEY PAIR for the private key `key`; returns the ids and the new public point.
    pub fn generate_key_pair(&mut self, key: &ObjectRef) -> Result<GeneratedKey> {
        let described = key.describe(ObjectKind::PrivateKey);
        let what = format!("GENERATE KEY PAIR ({described})");
        let data = self.run(|ch| {
            let command = Command::new(0, ins::GENERATE_KEY_PAIR, 0, 0)
                .data(key.encode(ObjectKind::PrivateKey));
            ch.call(&what, Some(&described), command)
        })?;
        Ok(GeneratedKey {
            private_id: tlv::find(&what, &data, 0x84)?.unwrap_or_default().to_vec(),
            public_id: tlv::find(&what, &data, 0x85)?.unwrap_or_default().to_vec(),
            point: parse_public_key(&what, &data)?,
        })
    }
}

impl Drop for Applet {
    fn drop(&mut self) {
        // Cards have few logical channels: give ours back.
        if let Some(selected) = self.selected.take() {
            if selected.channel != 0 {
                if let Ok(mut link) = self.transport.link() {
                    close_channel(&mut *link, &selected);
                }
            }
        }
    }
}

/// The selected applet on one channel, inside an exclusive link.
struct Channel<'a> {
    link: &'a mut dyn Link,
    cla: u8,
}

impl Channel<'_> {
    /// Sends `command` with this channel's class byte; returns the complete response.
    fn send(&mut self, what: &str, mut command: Command) -> Result<Response> {
        command.cla = self.cla;
        let link = &mut *self.link;
        exchange(what, &command, &mut |apdu| link.transmit(apdu))
    }

    /// Like [`send`], but anything but 9000 is an error; a "not found" names `object`.
    fn call(&mut self, what: &str, object: Option<&str>, command: Command) -> Result<Vec<u8>> {
        let response = self.send(what, command)?;
        match (response.sw, object) {
            (0x9000, _) => Ok(response.data),
            (0x6A82, Some(object)) => Err(Error::NotFound {
                what: object.to_string(),
                sw: 0x6A82,
            }),
            (sw, _) => Err(Error::from_status(what, sw)),
        }
    }

    /// Closes a session after a failure, so that the applet is not left waiting for its
    /// UPDATE (a real applet stayed wedged otherwise). Best effort: the first error is the one
    /// reported.
    fn close_session(&mut self, init_ins: u8, session: u8) {
        let _ = self.send(
            "session close",
            Command::new(0, init_ins, SESSION_CLOSE, session),
        );
    }
}

fn open_and_select(link: &mut dyn Link, config: &AppletConfig) -> Result<Selected> {
    if config.channel == ChannelMode::Logical {
        if let Some(selected) = open_by_transport(link, &config.aids)? {
            return Ok(selected);
        }
    }
    let channel = match config.channel {
        ChannelMode::Basic => 0,
        ChannelMode::Logical => open_logical_channel(link)?.unwrap_or(0),
    };
    let mut tried = Vec::new();
    for aid in &config.aids {
        let select =
            Command::new(interindustry_cla(channel), ins::SELECT, 0x04, 0x00).data(aid.clone());
        let response = exchange("SELECT", &select, &mut |apdu| link.transmit(apdu))?;
        if response.is_ok() {
            return Ok(Selected {
                channel,
                aid: aid.clone(),
                by_transport: false,
            });
        }
        tried.push(format!("{} (SW {:04X})", hex::encode(aid), response.sw));
    }
    if channel != 0 {
        let _ = link.transmit(&Command::new(0x00, ins::MANAGE_CHANNEL, 0x80, channel).encode());
    }
    Err(Error::NoApplet(format!(
        "no AID answered SELECT: {}",
        tried.join(", ")
    )))
}

/// A channel the transport opens with the applet selected (a modem's AT+CCHO), trying each
/// AID in order; `None` when the transport leaves channels to the session, or opened none:
/// the session then tries MANAGE CHANNEL and SELECT itself (a modem may refuse to select an
/// applet it does not know, yet pass the APDUs that do).
fn open_by_transport(link: &mut dyn Link, aids: &[Vec<u8>]) -> Result<Option<Selected>> {
    for aid in aids {
        match link.open_channel(aid)? {
            ChannelOpening::NotOffered => return Ok(None),
            ChannelOpening::Opened(channel) => {
                return Ok(Some(Selected {
                    channel,
                    aid: aid.clone(),
                    by_transport: true,
                }))
            }
            ChannelOpening::Refused(_) => {}
        }
    }
    Ok(None)
}

/// Gives a logical channel back: to the transport that opened it, or by MANAGE CHANNEL.
fn close_channel(link: &mut dyn Link, selected: &Selected) {
    if selected.by_transport {
        link.close_channel(selected.channel);
    } else {
        let close = Command::new(0x00, ins::MANAGE_CHANNEL, 0x80, selected.channel);
        let _ = link.transmit(&close.encode());
    }
}

/// Status words a card gives when our channel was closed (6881), or now holds an applet that
/// knows neither our class byte (6E00) nor our instructions (6D00).
const CHANNEL_TAKEN_SW: [u16; 3] = [0x6881, 0x6E00, 0x6D00];

fn suggests_channel_taken(error: &Error) -> bool {
    matches!(error, Error::Refused { sw, .. } if CHANNEL_TAKEN_SW.contains(sw))
}

/// Makes sure our applet is selected on our channel, at one APDU: SELECT by AID with no
/// response data (P2 0C). Another host may have closed the channel (the card answers 6881)
/// or selected its own applet on it (the SELECT makes it ours again). When the channel is
/// gone, a new one is opened and the applet selected there; when that fails too, the error
/// says what happened to the channel.
fn confirm_selection(
    link: &mut dyn Link,
    config: &AppletConfig,
    ours: Selected,
) -> Result<Selected> {
    let select = Command::new(interindustry_cla(ours.channel), ins::SELECT, 0x04, 0x0C)
        .data(ours.aid.clone());
    let response = exchange("SELECT", &select, &mut |apdu| link.transmit(apdu))?;
    if response.is_ok() {
        return Ok(ours);
    }
    if response.sw != 0x6881 {
        // Not "channel closed": a card that refuses this SELECT's form, or a passing error.
        // Opening another channel each time would leak one per transaction until none is
        // left (and the session fell back to the basic channel): report it instead.
        return Err(Error::Refused {
            what: format!(
                "SELECT of the applet {} to confirm channel {}",
                hex::encode(&ours.aid),
                ours.channel
            ),
            sw: response.sw,
        });
    }
    open_and_select(link, config).map_err(|e| {
        if e.is_connection_loss() {
            return e;
        }
        Error::NoApplet(format!(
            "channel {} no longer holds the applet {} (SW {:04X} to SELECT: another host \
             closed or re-used it), and selecting it again failed: {e}",
            ours.channel,
            hex::encode(&ours.aid),
            response.sw
        ))
    })
}

/// MANAGE CHANNEL open; `None` when the card has no logical channel to give.
fn open_logical_channel(link: &mut dyn Link) -> Result<Option<u8>> {
    let what = "MANAGE CHANNEL";
    let command = Command::new(0x00, ins::MANAGE_CHANNEL, 0x00, 0x00).le(1);
    let response = exchange(what, &command, &mut |apdu| link.transmit(apdu))?;
    match (response.sw, response.data.as_slice()) {
        (0x9000, [channel]) if (1..=19).contains(channel) => Ok(Some(*channel)),
        (0x9000, data) => Err(Error::malformed(
            what,
            format!("channel number {}", hex::encode(data)),
        )),
        (0x6881 | 0x6A81 | 0x6D00 | 0x6E00 | 0x6A86, _) => Ok(None),
        (sw, _) => Err(Error::from_status(what, sw)),
    }
}

/// Class byte of interindustry commands (SELECT, MANAGE CHANNEL) on `channel`.
fn interindustry_cla(channel: u8) -> u8 {
    if channel < 4 {
        channel
    } else {
        0x40 | (channel - 4)
    }
}

/// Class byte of the applet's own commands on `channel`.
fn applet_cla(style: ClaStyle, channel: u8) -> u8 {
    let base = interindustry_cla(channel);
    match style {
        ClaStyle::Interindustry => base,
        ClaStyle::Proprietary => base | 0x80,
    }
}

fn check_digest(hash: HashAlg, digest: &[u8]) -> Result<()> {
    if digest.len() != hash.digest_len() {
        return Err(Error::Invalid(format!(
            "a {} digest has {} bytes, not {}",
            hash.name(),
            hash.digest_len(),
            digest.len()
        )));
    }
    Ok(())
}

/// INIT data of COMPUTE/VERIFY SIGNATURE: key, mode, hash, ECDSA.
fn signature_init_data(key: Vec<u8>, mode: u8, hash: HashAlg) -> Vec<u8> {
    let mut data = key;
    tlv::push(&mut data, 0xA1, &[mode]);
    tlv::push(&mut data, 0x91, &hash.id());
    tlv::push(&mut data, 0x92, &[ecdsa::SIGALG_ECDSA]);
    data
}

/// Sends the UPDATEs of a session, `9E`-wrapped, P1 80 on the last; returns the last answer.
fn send_blocks(
    ch: &mut Channel<'_>,
    what: &str,
    ins: u8,
    session: u8,
    blocks: &[&[u8]],
) -> Result<Vec<u8>> {
    let mut answer = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        let p1 = if index + 1 == blocks.len() {
            LAST_BLOCK
        } else {
            MORE_BLOCKS
        };
        answer = ch.call(
            what,
            None,
            Command::new(0, ins, p1, session).data(tlv::encode(0x9E, block)),
        )?;
    }
    Ok(answer)
}

/// `34 len { 49 len { 86 len 04 X Y } }` → `04 X Y`.
fn parse_public_key(what: &str, data: &[u8]) -> Result<Vec<u8>> {
    let key = tlv::require(what, data, 0x34)?;
    let ec = tlv::require(what, key, 0x49)?;
    let point = tlv::require(what, ec, 0x86)?;
    if point.first() != Some(&0x04)
        || point.len() < 3
        || point.len() % 2 == 0
        || point.len() > MAX_POINT
    {
        return Err(Error::malformed(
            what,
            format!("not an uncompressed EC point ({} bytes)", point.len()),
        ));
    }
    Ok(point.to_vec())
}

fn encode_public_key(point: &[u8]) -> Vec<u8> {
    tlv::encode(0x34, &tlv::encode(0x49, &tlv::encode(0x86, point)))
}

#[cfg(test)]
mod tests;
