//! The card subcommands: readers, info, objects, cert, pubkey, sign, random, genkey, tlsa.

use std::fs;
use std::io::Write;

use clap::{Args, Subcommand};
use dane::name::DomainName;
use dane::tlsa::{self, Matching, Selector, Tlsa, Usage};
use iotsafe_card::applet::MAX_RANDOM;
use iotsafe_card::transport::pcsc;
use iotsafe_card::{Applet, Error, HashAlg, ObjectKind, ObjectRef, PublicKey, Target};
use iotsafe_hex as hex;
use iotsafe_provider::keys;
use openssl::pkey::{PKey, Public};
use openssl::x509::X509;

/// The help heading of the card options.
pub const HELP_HEADING: &str = "Card options (for the commands that use the card)";

/// Which card, applet and objects the subcommands use: each option is the card target's
/// attribute of the same name, parsed by the card layer. Global, so that they may come before
/// or after the subcommand; listed under their own heading so that the help of a command that
/// does not use the card (`dane`, `registry`) shows its own options first.
#[derive(Args)]
#[command(next_help_heading = HELP_HEADING)]
pub struct CardOptions {
    /// Use the first reader whose name contains this text (default: the first reader whose
    /// card has the applet).
    #[arg(long, global = true, env = "IOTSAFE_READER")]
    reader: Option<String>,
    /// Reach the card through this modem's AT command port instead of PC/SC (AT+CCHO/AT+CGLA
    /// when the modem offers them, AT+CSIM otherwise; `info` says which).
    #[arg(long, global = true, env = "IOTSAFE_MODEM", conflicts_with = "reader")]
    modem: Option<String>,
    /// The applet's AID in hex (default: the GSMA AID, then the other known ones).
    #[arg(long, global = true, env = "IOTSAFE_AID")]
    aid: Option<String>,
    /// Class byte convention of the applet's commands: 00 (0x0n) or 80 (0x8n) [default: 00].
    #[arg(long, global = true, env = "IOTSAFE_CLA_STYLE")]
    cla_style: Option<String>,
    /// Select the applet on the basic channel instead of a logical channel.
    #[arg(long, global = true)]
    basic_channel: bool,
    /// Private (and public) key id in hex.
    #[arg(
        long,
        global = true,
        conflicts_with = "key_label",
        default_value = "01"
    )]
    key_id: String,
    /// Private (and public) key label.
    #[arg(long, global = true)]
    key_label: Option<String>,
    /// Public key id in hex, for applets that keep the public key in an object of its own
    /// [default: the private key's id or label].
    #[arg(long, global = true, conflicts_with = "pub_label")]
    pub_id: Option<String>,
    /// Public key label, for applets that keep the public key in an object of its own.
    #[arg(long, global = true)]
    pub_label: Option<String>,
    /// Certificate file id in hex.
    #[arg(
        long,
        global = true,
        conflicts_with = "cert_label",
        default_value = "02"
    )]
    cert_id: String,
    /// Certificate file label.
    #[arg(long, global = true)]
    cert_label: Option<String>,
}

impl CardOptions {
    /// The card target these options name (key and certificate always named).
    pub(crate) fn target(&self) -> Result<Target, String> {
        let key = match &self.key_label {
            Some(label) => ("key-label", label.as_str()),
            None => ("key-id", self.key_id.as_str()),
        };
        let cert = match &self.cert_label {
            Some(label) => ("cert-label", label.as_str()),
            None => ("cert-id", self.cert_id.as_str()),
        };
        let attributes = [
            ("reader", self.reader.as_deref()),
            ("modem", self.modem.as_deref()),
            ("aid", self.aid.as_deref()),
            ("cla-style", self.cla_style.as_deref()),
            ("channel", self.basic_channel.then_some("basic")),
            (key.0, Some(key.1)),
            ("pub-id", self.pub_id.as_deref()),
            ("pub-label", self.pub_label.as_deref()),
            (cert.0, Some(cert.1)),
        ];
        let mut target = Target::default();
        for (name, value) in attributes {
            if let Some(value) = value {
                // The card layer's messages start with the attribute's name: the option's.
                target.set(name, value).map_err(|e| format!("--{e}"))?;
            }
        }
        Ok(target)
    }

    pub(crate) fn open(&self) -> Result<Applet, String> {
        self.target()?.connect().map_err(|e| e.to_string())
    }

    pub(crate) fn key(&self) -> Result<ObjectRef, String> {
        self.target()?.key.ok_or_else(|| "no key named".to_string())
    }

    /// The public key of the pair: the one named, or the private key's own name.
    fn public(&self) -> Result<ObjectRef, String> {
        let target = self.target()?;
        target
            .public
            .or(target.key)
            .ok_or_else(|| "no key named".to_string())
    }

    pub(crate) fn cert(&self) -> Result<ObjectRef, String> {
        self.target()?
            .cert
            .ok_or_else(|| "no certificate named".to_string())
    }
}

#[derive(Subcommand)]
pub enum CardCommand {
    /// List the PC/SC readers, each with "card present" or "no card".
    Readers,
    /// Show the applet's description of itself.
    Info,
    /// List the keys and files on the applet.
    Objects,
    /// Print the device certificate (PEM).
    Cert {
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<String>,
    },
    /// Print the public key (PEM SubjectPublicKeyInfo).
    Pubkey {
        #[arg(long)]
        out: Option<String>,
    },
    /// Sign a digest with the card's key; prints the DER signature in hex.
    Sign {
        /// The digest, in hex.
        #[arg(long)]
        digest: String,
        /// The hash that made the digest: sha256, sha384 or sha512.
        #[arg(long, default_value = "sha256")]
        hash: String,
        /// Write the DER signature to this file instead of hex to stdout.
        #[arg(long)]
        out: Option<String>,
    },
    /// Print N random bytes from the card, in hex (N at most 65536).
    Random {
        #[arg(value_parser = random_count)]
        count: usize,
    },
    /// Generate a new key pair on the card; prints the public key (PEM). An existing key is
    /// kept unless --force.
    Genkey {
        /// Replace the key if the card already has one under this name (its certificate and
        /// TLSA records then no longer match).
        #[arg(long)]
        force: bool,
    },
    /// Write a key-reference file: a PEM block naming the card's key, loadable by OpenSSL
    /// programs through the iotsafe provider.
    Keyref {
        #[arg(long)]
        out: String,
        /// Put the card's certificate (PEM) first in the file, then the reference; refused when
        /// the certificate does not hold the referenced key.
        #[arg(long)]
        with_cert: bool,
    },
    /// Print the TLSA record of the selected key (selector 1: its public key read from the
    /// card) or of its certificate (selector 0: refused when the certificate holds another
    /// key), in zone-file form.
    Tlsa {
        /// Owner name, e.g. _8883._tcp.broker.example or sensor7._device.example.com.
        #[arg(long)]
        name: String,
        /// Certificate usage: 3 DANE-EE, 2 DANE-TA, 1 PKIX-EE, 0 PKIX-TA.
        #[arg(long, default_value_t = 3)]
        usage: u8,
        /// Selector: 0 full certificate, 1 SubjectPublicKeyInfo.
        #[arg(long, default_value_t = 1)]
        selector: u8,
        /// Matching type: 0 exact, 1 SHA-256, 2 SHA-512.
        #[arg(long, default_value_t = 1)]
        mtype: u8,
    },
}

/// The byte count of `random`: a number up to what the applet layer serves per request.
fn random_count(text: &str) -> Result<usize, String> {
    let too_many = || format!("at most {MAX_RANDOM} bytes per call");
    match text.parse::<usize>() {
        Ok(count) if count <= MAX_RANDOM => Ok(count),
        Ok(_) => Err(too_many()),
        // Digits too many for a usize are a count too large, not a malformed one.
        Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => Err(too_many()),
        Err(e) => Err(format!("not a byte count: {e}")),
    }
}

pub fn run(options: &CardOptions, command: CardCommand) -> Result<(), String> {
    match command {
        CardCommand::Readers => readers()?,
        CardCommand::Info => info(options)?,
        CardCommand::Objects => objects(options)?,
        CardCommand::Cert { out } => {
            let pem = certificate(options)?.to_pem().map_err(|e| e.to_string())?;
            write_out(out.as_deref(), &pem)?;
        }
        CardCommand::Pubkey { out } => {
            let pem = public_key_pem(options, &mut options.open()?)?;
            write_out(out.as_deref(), &pem)?;
        }
        CardCommand::Sign { digest, hash, out } => sign(options, &digest, &hash, out.as_deref())?,
        CardCommand::Random { count } => {
            println!(
                "{}",
                hex::encode(&options.open()?.random(count).map_err(|e| e.to_string())?)
            )
        }
        CardCommand::Genkey { force } => genkey(options, force)?,
        CardCommand::Keyref { out, with_cert } => keyref(options, &out, with_cert)?,
        CardCommand::Tlsa {
            name,
            usage,
            selector,
            mtype,
        } => tlsa(options, &name, usage, selector, mtype)?,
    }
    Ok(())
}

/// The applet's description, after how APDUs reach it when the transport had a choice (the
/// AT commands of a modem).
fn info(options: &CardOptions) -> Result<(), String> {
    let mut applet = options.open()?;
    let info = applet.info().map_err(|e| e.to_string())?;
    if let Some(route) = applet.route() {
        println!("modem:        {} by {route}", applet.reader());
    }
    print!("{info}");
    Ok(())
}

fn readers() -> Result<(), String> {
    let readers = pcsc::reader_presence().map_err(|e| e.to_string())?;
    if readers.is_empty() {
        return Err("PC/SC knows no reader".into());
    }
    for (name, card) in readers {
        println!("{name}\t{}", if card { "card present" } else { "no card" });
    }
    Ok(())
}

fn objects(options: &CardOptions) -> Result<(), String> {
    for object in options.open()?.objects().map_err(|e| e.to_string())? {
        println!("{object}");
    }
    Ok(())
}

fn certificate(options: &CardOptions) -> Result<X509, String> {
    read_certificate(options, &mut options.open()?)
}

pub(crate) fn read_certificate(options: &CardOptions, applet: &mut Applet) -> Result<X509, String> {
    let cert = options.cert()?;
    let der = applet.read_file(&cert).map_err(|e| e.to_string())?;
    X509::from_der(&der)
        .map_err(|e| format!("file {cert} on the card is not a DER X.509 certificate: {e}"))
}

pub(crate) fn holds_key(cert: &X509, key: &PKey<Public>) -> bool {
    cert.public_key().is_ok_and(|public| public.public_eq(key))
}

fn public_key_pem(options: &CardOptions, applet: &mut Applet) -> Result<Vec<u8>, String> {
    card_public_key(options, applet)?
        .public_key_to_pem()
        .map_err(|e| e.to_string())
}

/// The selected key's public key, read from the card.
pub(crate) fn card_public_key(
    options: &CardOptions,
    applet: &mut Applet,
) -> Result<PKey<Public>, String> {
    let key = options.public()?;
    let public = applet
        .public_key(&key)
        .map_err(|e| public_key_hint(options, applet, e))?;
    openssl_key(&key, &public)
}

/// The certificate of the selected key: refused, naming both objects, when it holds another
/// public key (a certificate left from an earlier key, or the one of another key).
fn certificate_of_key(
    options: &CardOptions,
    applet: &mut Applet,
    key: &PKey<Public>,
) -> Result<X509, String> {
    let cert = read_certificate(options, applet)?;
    if holds_key(&cert, key) {
        return Ok(cert);
    }
    Err(format!(
        "the certificate in {} holds another public key than {}: it is not this key's \
         certificate (name the key's own with --cert-id or --cert-label, or issue one for it)",
        options.cert()?.describe(ObjectKind::File),
        options.key()?.describe(ObjectKind::PrivateKey),
    ))
}

/// The message of a failed public key read. When the key was looked up under the private
/// key's own name and is not there, the card may keep it in an object of its own: the
/// message lists the card's public keys (the host does not guess which one pairs).
fn public_key_hint(options: &CardOptions, applet: &mut Applet, error: Error) -> String {
    let named = options.pub_id.is_some() || options.pub_label.is_some();
    if named || !matches!(error, Error::NotFound { .. }) {
        return error.to_string();
    }
    let publics: Vec<String> = applet
        .objects()
        .unwrap_or_default()
        .iter()
        .filter(|object| object.kind == ObjectKind::PublicKey)
        .map(|object| match &object.label {
            Some(label) => format!("id {} label {label:?}", hex::encode(&object.id)),
            None => format!("id {}", hex::encode(&object.id)),
        })
        .collect();
    if publics.is_empty() {
        return error.to_string();
    }
    format!(
        "{error}; the card's public keys: {} (name the key's own with --pub-id or --pub-label)",
        publics.join(", ")
    )
}

/// A card key as an OpenSSL key; fails when the point is not on its curve.
fn openssl_key(key: &ObjectRef, public: &PublicKey) -> Result<PKey<Public>, String> {
    let curve = public.curve;
    keys::public_key_from_point(curve, &public.point).map_err(|e| {
        format!(
            "public key {key} is not a valid point on {}: {e}",
            curve.name()
        )
    })
}

fn sign(
    options: &CardOptions,
    digest: &str,
    hash_name: &str,
    out: Option<&str>,
) -> Result<(), String> {
    let hash = HashAlg::from_name(hash_name)
        .ok_or_else(|| format!("unknown hash '{hash_name}' (sha256, sha384, sha512)"))?;
    let digest = hex::decode(digest).map_err(|e| format!("--digest: {e}"))?;
    let signature = options
        .open()?
        .sign_digest(&options.key()?, hash, &digest)
        .map_err(|e| e.to_string())?;
    match out {
        Some(path) => write_out(Some(path), &signature),
        None => {
            println!("{}", hex::encode(&signature));
            Ok(())
        }
    }
}

/// `genkey`: the new public key (PEM) on stdout.
fn genkey(options: &CardOptions, force: bool) -> Result<(), String> {
    let new = generate_key(options, &mut options.open()?, force)?;
    let pem = new.public_key_to_pem().map_err(|e| e.to_string())?;
    std::io::stdout().write_all(&pem).map_err(|e| e.to_string())
}

/// Generates the selected key pair on the card; its public key. The curve of the new key is
/// the one the card names in the public key's attributes. A key already on the card is
/// replaced only with `force`; its certificate and TLSA records then describe a key that is
/// gone, and the tool says which (on stderr).
pub(crate) fn generate_key(
    options: &CardOptions,
    applet: &mut Applet,
    force: bool,
) -> Result<PKey<Public>, String> {
    let key = options.key()?;
    let old = existing_key(options, applet, &key)?;
    if old.is_some() && !force {
        return Err(format!(
            "{} already exists on the applet: generating would replace it (and leave its \
             certificate and TLSA records without their key); add --force to replace it",
            key.describe(ObjectKind::PrivateKey)
        ));
    }
    let generated = applet.generate_key_pair(&key).map_err(|e| e.to_string())?;
    let public_ref = if generated.public_id.is_empty() {
        key.clone()
    } else {
        ObjectRef::Id(generated.public_id.clone())
    };
    let curve = applet.curve_of(&public_ref).map_err(|e| e.to_string())?;
    let public = PublicKey {
        curve,
        point: generated.point,
    };
    let new = openssl_key(&public_ref, &public)?;
    eprintln!(
        "generated private key id {} / public key id {}",
        hex::encode(&generated.private_id),
        hex::encode(&generated.public_id)
    );
    if let Some(old) = old {
        report_replaced_key(options, applet, &old, &new)?;
    }
    Ok(new)
}

/// The public key of `key` when the card already has that private key; `None` when it has
/// not (a key that is there but whose public key cannot be read is an error: replacing it
/// blindly is what this check is for).
fn existing_key(
    options: &CardOptions,
    applet: &mut Applet,
    key: &ObjectRef,
) -> Result<Option<PKey<Public>>, String> {
    match applet.object(ObjectKind::PrivateKey, key) {
        Ok(_) => {}
        Err(Error::NotFound { .. }) => return Ok(None),
        // Applets that refuse GET DATA for one object list it among the others.
        Err(Error::Refused { .. }) if !listed(applet, key)? => return Ok(None),
        Err(Error::Refused { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    card_public_key(options, applet).map(Some)
}

/// Whether the applet's object list has the private key `key`.
fn listed(applet: &mut Applet, key: &ObjectRef) -> Result<bool, String> {
    let objects = applet.objects().map_err(|e| e.to_string())?;
    Ok(objects.iter().any(|object| {
        object.kind == ObjectKind::PrivateKey
            && match key {
                ObjectRef::Id(id) => object.id == *id,
                ObjectRef::Label(label) => object.label.as_deref() == Some(label.as_str()),
            }
    }))
}

/// After a replaced key: what the certificate on the card and the published TLSA records
/// now are, on stderr (stdout keeps the new public key alone).
fn report_replaced_key(
    options: &CardOptions,
    applet: &mut Applet,
    old: &PKey<Public>,
    new: &PKey<Public>,
) -> Result<(), String> {
    let record = |key: &PKey<Public>| dane_ee_record(key).map(|record| record.to_string());
    let cert = options.cert()?.describe(ObjectKind::File);
    match read_certificate(options, applet) {
        Ok(c) if holds_key(&c, old) => eprintln!(
            "the certificate in {cert} holds the replaced key: it no longer matches the card's \
             key; issue a new certificate for the new key and write it to the card"
        ),
        Ok(c) if holds_key(&c, new) => {}
        Ok(_) => eprintln!("the certificate in {cert} holds neither the old nor the new key"),
        Err(e) => eprintln!("no certificate checked: {e}"),
    }
    eprintln!(
        "TLSA records of the replaced key must change: selector 1 records (TLSA {} becomes \
         TLSA {}), and every selector 0 record once the new certificate is issued",
        record(old)?,
        record(new)?
    );
    Ok(())
}

/// The DANE-EE record of a key: `3 1 1`, the SHA-256 of its SubjectPublicKeyInfo.
pub(crate) fn dane_ee_record(key: &PKey<Public>) -> Result<Tlsa, String> {
    let spki = key.public_key_to_der().map_err(|e| e.to_string())?;
    Tlsa::for_public_key(&spki, Usage::DaneEe, Matching::Sha256).map_err(|e| e.to_string())
}

/// A record in zone-file form, its owner fully qualified.
pub(crate) fn zone_line(owner: &str, record: &Tlsa) -> String {
    format!("{} IN TLSA {record}", tlsa::fqdn(owner))
}

fn tlsa(
    options: &CardOptions,
    name: &str,
    usage: u8,
    selector: u8,
    mtype: u8,
) -> Result<(), String> {
    let (Some(usage), Some(selector), Some(mtype)) = (
        Usage::from_u8(usage),
        Selector::from_u8(selector),
        Matching::from_u8(mtype),
    ) else {
        return Err(format!(
            "TLSA {usage} {selector} {mtype}: usage 0-3, selector 0-1, matching type 0-2"
        ));
    };
    // Checked before the card is used: an empty or malformed owner is a usage mistake.
    DomainName::parse(name).map_err(|e| format!("--name: {e}"))?;
    let mut applet = options.open()?;
    let key = card_public_key(options, &mut applet)?;
    let record = match selector {
        Selector::Spki => {
            let spki = key.public_key_to_der().map_err(|e| e.to_string())?;
            Tlsa::for_public_key(&spki, usage, mtype)
        }
        Selector::Cert => {
            let cert = certificate_of_key(options, &mut applet, &key)?;
            Tlsa::for_certificate(&cert, usage, selector, mtype)
        }
    }
    .map_err(|e| e.to_string())?;
    println!("{}", zone_line(name, &record));
    Ok(())
}

fn write_out(path: Option<&str>, bytes: &[u8]) -> Result<(), String> {
    match path {
        Some(path) => fs::write(path, bytes).map_err(|e| format!("cannot write {path}: {e}")),
        None => std::io::stdout()
            .write_all(bytes)
            .map_err(|e| e.to_string()),
    }
}

/// The key reference names the reader, applet and objects the options chose; the key is
/// checked on the card first, so that a reference to a missing key is never written.
fn keyref(options: &CardOptions, out: &str, with_cert: bool) -> Result<(), String> {
    let mut applet = options.open()?;
    let key = card_public_key(options, &mut applet)?;
    let mut file = Vec::new();
    if with_cert {
        let cert = certificate_of_key(options, &mut applet, &key)?;
        file.extend(cert.to_pem().map_err(|e| e.to_string())?);
    }
    file.extend(key_reference(options)?.into_bytes());
    write_out(Some(out), &file)
}

/// The key-reference PEM block of the key the options name (not checked on the card).
pub(crate) fn key_reference(options: &CardOptions) -> Result<String, String> {
    use iotsafe_provider::uri::{keyref_pem, KeyUri};
    let uri = KeyUri {
        target: options.target()?,
        object: None,
    };
    Ok(keyref_pem(&uri.to_string()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Options {
        #[command(flatten)]
        card: CardOptions,
    }

    fn options(args: &[&str]) -> CardOptions {
        Options::parse_from([&["iotsafe"], args].concat()).card
    }

    #[test]
    fn the_options_name_a_card_target() {
        let target = options(&[
            "--aid",
            "A000000559",
            "--cla-style",
            "80",
            "--basic-channel",
            "--key-label",
            "DEVICE",
        ])
        .target()
        .unwrap();
        let printed: Vec<(&str, String)> = target
            .attributes()
            .into_iter()
            .filter(|(name, _)| !["reader", "modem"].contains(name))
            .collect();
        let expected = [
            ("aid", "A000000559"),
            ("cla-style", "80"),
            ("channel", "basic"),
            ("key-label", "DEVICE"),
            ("cert-id", "02"),
        ];
        assert_eq!(
            printed,
            expected.map(|(name, value)| (name, value.to_string()))
        );
    }

    #[test]
    fn a_public_key_of_its_own_is_named_in_the_target() {
        let card = options(&["--pub-id", "03"]);
        assert_eq!(card.public().unwrap(), ObjectRef::Id(vec![3]));
        assert_eq!(card.key().unwrap(), ObjectRef::Id(vec![1]));
        let printed = card.target().unwrap().attributes();
        assert!(
            printed.contains(&("pub-id", "03".to_string())),
            "{printed:?}"
        );
        let card = options(&["--pub-label", "DEVICE-PUB"]);
        assert_eq!(
            card.public().unwrap(),
            ObjectRef::Label("DEVICE-PUB".into())
        );
        // Without either, the private key's own name.
        assert_eq!(options(&[]).public().unwrap(), ObjectRef::Id(vec![1]));
    }

    #[test]
    fn a_bad_value_is_refused_naming_the_option() {
        for (args, start) in [
            (&["--key-id", "zz"][..], "--key-id: "),
            (
                &["--aid", "A000"][..],
                "--aid 'A000': an AID has 5 to 16 bytes",
            ),
            (&["--cla-style", "42"][..], "--cla-style must be 00 or 80"),
            (&["--pub-id", "0x"][..], "--pub-id: "),
        ] {
            let e = options(args).target().unwrap_err();
            assert!(e.starts_with(start), "{args:?}: {e}");
        }
    }
}
