//! What each fuzz target (`fuzz/fuzz_targets/`) runs, in the library so that the regression
//! tests (`tests/fuzz_regressions.rs`) replay a kept input through exactly the same code on the
//! stable toolchain.
//!
//! Every function takes arbitrary bytes and must return, whatever they hold: a panic, an abort
//! or a sanitizer report is a bug in the parser it reaches. Where a value can be printed and
//! parsed back, the round trip is checked too, since a parser that accepts what its printer
//! never produces (or the reverse) is how a name or a key reference changes meaning.
//!
//! Not a stable API: hidden from the documentation, used only by the fuzzers and the tests.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{c_int, CStr, CString};
use std::str::FromStr;
use std::sync::OnceLock;

use crate::dane::client::ClientVerifier;
use crate::dane::name::{DeviceName, DomainName};
use crate::dane::tlsa::{self, Tlsa};
use crate::iotsafe::apdu::{self, Command, Response};
use crate::iotsafe::transport::{Link, Transport};
use crate::iotsafe::{ecdsa, objects, tlv, Applet, AppletConfig, ClaStyle, HashAlg};
use crate::iotsafe::{AppInfo, Error, ObjectInfo, ObjectKind, ObjectRef, Result};
use crate::provider::config::{self, Settings};
use crate::provider::ffi::{OSSL_CORE_HANDLE, OSSL_PARAM};
use crate::provider::uri::{self, KeyUri};

/// What a fuzz target runs on one input.
pub type Target = fn(&[u8]);

/// Every target by the name of its directory under `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("apdu_tlv", apdu_tlv),
    ("applet_objects", applet_objects),
    ("applet_card", applet_card),
    ("modem_at", modem_at),
    ("keyref", keyref),
    ("tlsa_rdata", tlsa_rdata),
    ("owner_name", owner_name),
    ("clientid_ext", clientid_ext),
    ("openssl_cnf", openssl_cnf),
];

/// Splits fuzz bytes into length-prefixed pieces (one length byte, then that many bytes; the
/// last piece may be short). A card's answers, lines, records: whatever a target needs a list of.
fn pieces(mut data: &[u8]) -> VecDeque<&[u8]> {
    let mut out = VecDeque::new();
    while let Some((&len, rest)) = data.split_first() {
        let (piece, rest) = rest.split_at(usize::from(len).min(rest.len()));
        out.push_back(piece);
        data = rest;
    }
    out
}

/// BER-TLV, response APDUs, the 61xx/6Cxx repairs and the signature formats of the applet.
pub fn apdu_tlv(data: &[u8]) {
    if let Ok(all) = tlv::parse_all("fuzz", data) {
        for element in all {
            let _ = tlv::parse_all("fuzz", element.value);
            // What was parsed encodes back to something that parses to the same element.
            let encoded = tlv::encode(element.tag, element.value);
            let (again, rest) = tlv::parse_one("fuzz", &encoded).expect("re-encoded TLV parses");
            assert_eq!((again, rest.len()), (element, 0), "TLV round trip");
        }
    }
    if let Some((&tag, rest)) = data.split_first() {
        let _ = tlv::require("fuzz", rest, u16::from(tag));
    }
    if let Ok(response) = Response::parse("fuzz", data) {
        let _ = response.into_ok(|| "fuzz".into());
    }
    // The card's answers to one command, repaired into one response.
    let mut answers = pieces(data);
    let command = Command::new(0x81, 0xCB, 0x01, 0x00).le(256);
    let _ = apdu::exchange("fuzz", &command, &mut |_| {
        answers
            .pop_front()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::Transport("no more answers".into()))
    });
    if let Ok(raw) = ecdsa::raw_from_response("fuzz", data) {
        let der = ecdsa::der_from_raw(&raw);
        let width = raw.len() / 2;
        assert_eq!(
            ecdsa::raw_from_der(&der, width).ok(),
            Some(raw),
            "r‖s round trip"
        );
    }
    let _ = ecdsa::raw_from_der(data, 32);
}

/// The object list (GET DATA P1=01), one object's attributes and the applet's information, as
/// parsed and as printed by `iotsafe objects` / `iotsafe info`.
pub fn applet_objects(data: &[u8]) {
    if let Ok(list) = objects::parse_object_list("fuzz", data) {
        for object in list {
            let _ = (
                object.to_string(),
                object.reference(),
                object.key_type_name(),
            );
        }
    }
    for kind in [
        ObjectKind::PrivateKey,
        ObjectKind::PublicKey,
        ObjectKind::File,
        ObjectKind::SecretKey,
    ] {
        if let Ok(object) = ObjectInfo::parse("fuzz", kind, data) {
            let _ = (object.to_string(), object.reference().describe(kind));
        }
    }
    if let Ok(info) = AppInfo::parse("fuzz", data) {
        let _ = info.to_string();
    }
}

/// A card whose answers are the fuzz input: it answers every command with its next answer, and
/// is gone when they run out.
#[derive(Clone)]
struct FuzzCard(std::sync::Arc<std::sync::Mutex<VecDeque<Vec<u8>>>>);

impl Transport for FuzzCard {
    fn name(&self) -> &str {
        "fuzz"
    }
    fn link(&mut self) -> Result<Box<dyn Link + '_>> {
        Ok(Box::new(self.clone()))
    }
    fn recover(&mut self) -> Result<()> {
        Ok(())
    }
}

impl Link for FuzzCard {
    fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>> {
        let mut answers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        answers.pop_front().ok_or_else(|| Error::CardAbsent {
            reader: "fuzz".into(),
        })
    }
}

/// One applet operation against a card that answers with the fuzz input: the first byte picks
/// the operation and the applet's settings, the rest are the card's answers (length-prefixed).
/// Reaches the file reader (sizes from the card), the key and signature parsers, the paging of
/// the object list, channel and SELECT handling.
pub fn applet_card(data: &[u8]) {
    let Some((&choice, answers)) = data.split_first() else {
        return;
    };
    let card = FuzzCard(std::sync::Arc::new(std::sync::Mutex::new(
        pieces(answers).into_iter().map(<[u8]>::to_vec).collect(),
    )));
    let config = AppletConfig {
        cla_style: if choice & 0x80 != 0 {
            ClaStyle::Proprietary
        } else {
            ClaStyle::Interindustry
        },
        ..AppletConfig::default()
    };
    let mut applet = Applet::new(Box::new(card), config);
    let key = ObjectRef::Id(vec![0x01]);
    let label = ObjectRef::Label("cert".into());
    match choice & 0x0F {
        0 => drop(applet.select()),
        1 => drop(applet.info().map(|i| i.to_string())),
        2 => drop(applet.objects()),
        3 => drop(applet.object(ObjectKind::PrivateKey, &key)),
        4 => drop(applet.read_file(&label)),
        5 => drop(applet.read_public_key(&key)),
        6 => drop(applet.sign_digest(&key, HashAlg::Sha256, &[0xAB; 32])),
        7 => drop(applet.sign_message(&key, HashAlg::Sha384, &[0x5A; 300])),
        8 => drop(applet.verify_digest(&key, HashAlg::Sha256, &[0xAB; 32], &signature())),
        9 => drop(applet.compute_dh(&key, &ObjectRef::Id(vec![0x10]), &[0x04; 65])),
        // A few blocks of GET RANDOM; large counts are the CLI's to bound.
        10 => drop(applet.random(usize::from(choice >> 4) * 37)),
        11 => drop(applet.generate_key_pair(&key)),
        _ => drop(applet.read_file(&ObjectRef::Id(vec![0x02]))),
    }
}

/// A well-formed DER ECDSA signature for VERIFY SIGNATURE.
fn signature() -> Vec<u8> {
    ecdsa::der_from_raw(&[0x42; 64])
}

/// A modem's answer to `AT+CSIM`, `AT+CGLA` or `AT+CCHO`: final result codes, echo,
/// unsolicited lines, the `+CSIM:`/`+CGLA:` line and its hex, the session id.
pub fn modem_at(data: &[u8]) {
    use crate::iotsafe::transport::modem;
    let text = String::from_utf8_lossy(data);
    let Some(Ok(lines)) = modem::Answer::default().feed(&text) else {
        return;
    };
    for parse in [modem::parse_csim, modem::parse_cgla] {
        if let Ok(apdu) = parse(&lines) {
            let _ = Response::parse("fuzz", &apdu);
        }
    }
    let _ = modem::parse_ccho(&lines);
}

/// A key reference as a file holds it (PEM), its DER, and the `iotsafe:` URI inside: what the
/// provider's decoder does with any PEM object OpenSSL hands it.
pub fn keyref(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split_inclusive('\n').map(str::to_string);
    while let Some(block) = uri::next_pem_block(|| lines.next(), 64 * 1024) {
        if block.label == uri::PEM_LABEL {
            if let Ok(text) = uri::uri_of_keyref_pem(&block) {
                uri_round_trip(&text);
            }
        }
    }
    if let Some(text) = uri::uri_of_keyref(data) {
        uri_round_trip(&text);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        uri_round_trip(text);
        // Whatever is printed into a key reference reads back the same.
        assert_eq!(
            uri::uri_of_keyref(&uri::keyref_der(text)).as_deref(),
            Some(text),
            "key reference DER round trip"
        );
    }
}

/// Parses `text` as a URI; a URI that parses prints as one that parses to the same settings.
fn uri_round_trip(text: &str) {
    let Ok(parsed) = KeyUri::parse(text) else {
        return;
    };
    let printed = parsed.to_string();
    let again = KeyUri::parse(&printed)
        .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
    assert_eq!(again, parsed, "{text:?} printed as {printed:?}");
}

/// TLSA record data from the wire (as the resolver receives it) and in presentation form (zone
/// lines, `iotsafe dane` arguments); usability, digest agility and matching a certificate.
pub fn tlsa_rdata(data: &[u8]) {
    use hickory_resolver::proto::rr::{RData, RecordType};
    use hickory_resolver::proto::serialize::binary::{BinDecoder, Restrict};
    let mut records = Vec::new();
    for piece in pieces(data) {
        let Ok(len) = u16::try_from(piece.len()) else {
            continue;
        };
        let mut decoder = BinDecoder::new(piece);
        if let Ok(rdata) = RData::read(&mut decoder, RecordType::TLSA, Restrict::new(len)) {
            if let Some(record) = Tlsa::from_rdata(&rdata) {
                check_presentation(&record);
                records.push(record);
            }
        }
    }
    for record in tlsa::agile(&records) {
        assert!(record.is_usable(), "agile keeps only usable records");
        let _ = record.matches(test_certificate());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(record) = Tlsa::from_str(text) {
            check_presentation(&record);
        }
        for line in text.lines() {
            let _ = Tlsa::parse_zone_line(line);
        }
    }
}

/// A record prints as a zone line that parses back to it (record data is never empty there).
fn check_presentation(record: &Tlsa) {
    if record.data.is_empty() {
        return;
    }
    let line = record.to_zone_line("_443._tcp.example.test", 300);
    let (owner, back) =
        Tlsa::parse_zone_line(&line).unwrap_or_else(|e| panic!("{line:?} does not parse: {e}"));
    assert_eq!(owner.as_deref(), Some("_443._tcp.example.test."));
    assert_eq!(&back, record, "{line:?}");
}

/// One self-signed P-256 certificate, made once per process.
fn test_certificate() -> &'static openssl::x509::X509Ref {
    static CERT: OnceLock<openssl::x509::X509> = OnceLock::new();
    CERT.get_or_init(|| {
        use openssl::{ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509};
        let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
        let key = PKey::from_ec_key(ec::EcKey::generate(&group).expect("key")).expect("pkey");
        let mut name = x509::X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "fuzz.example.test")
            .expect("CN");
        let name = name.build();
        let mut cert = x509::X509Builder::new().expect("builder");
        cert.set_subject_name(&name).expect("subject");
        cert.set_issuer_name(&name).expect("issuer");
        cert.set_pubkey(&key).expect("key");
        cert.sign(&key, MessageDigest::sha256()).expect("sign");
        cert.build()
    })
}

/// A device or service name as the DANCE checks see it: parsed once, its owner-name form, the
/// allowed-domain check, and the DNS name the resolver would look up. A name accepted as within
/// a domain must lie below that domain in DNS terms too (the escaped-dot escape of issue 7).
pub fn owner_name(data: &[u8]) {
    let mut parts = pieces(data);
    let (Some(name), Some(domain)) = (parts.pop_front(), parts.pop_front()) else {
        return;
    };
    let (name, domain) = (
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(domain),
    );
    let _ = tlsa::service_owner(8883, "tcp", &name);
    let fqdn = tlsa::fqdn(&name);
    assert!(fqdn.ends_with('.') && !fqdn.ends_with(".."), "{fqdn:?}");
    let Ok(device) = DeviceName::parse(&name) else {
        return;
    };
    let _ = device.form();
    assert_eq!(
        DeviceName::parse(&device.to_string()).as_ref(),
        Ok(&device),
        "a parsed name prints as itself"
    );
    let Ok(allowed) = DomainName::parse(&domain) else {
        return;
    };
    if device.is_within(&allowed) {
        let zone = hickory_resolver::proto::rr::Name::from_str(&format!("{allowed}."))
            .expect("an allowed domain is a DNS name");
        assert!(
            zone.zone_of(device.dns_name()),
            "{device} is within {allowed} but looked up as {}",
            device.dns_name()
        );
    }
}

/// The body of a `dane_clientid` extension as a server receives it, and what the server does
/// with the name before any DNS: parsing and the allowed-domain check.
pub fn clientid_ext(data: &[u8]) {
    use crate::dane::clientid_ext::{decode as decode_client_name, encode as encode_client_name};
    let Some(name) = decode_client_name(data) else {
        return;
    };
    if let Ok(device) = DeviceName::parse(&name) {
        let _ = ClientVerifier::new(vec!["example.test".into()], None).is_allowed(&device);
    }
    if !name.is_empty() {
        assert_eq!(
            decode_client_name(&encode_client_name(name.as_bytes())).as_deref(),
            Some(name.as_str()),
            "dane_clientid round trip"
        );
    }
}

/// The provider's settings as openssl.cnf gives them: `name = value` lines of its section are
/// answered through the core's get_params (as OpenSSL does at `OSSL_provider_init`), then checked
/// and turned into the applet configuration and a URI that names the same objects.
pub fn openssl_cnf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let section: BTreeMap<CString, CString> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter_map(|(name, value)| {
            let cut = |s: &str| CString::new(s.trim().split('\0').next().unwrap_or("")).ok();
            Some((cut(name)?, cut(value)?))
        })
        .collect();
    // SAFETY: `answer_from_section` reads the map behind the handle, which outlives the call.
    let values = unsafe {
        config::read_core_params(
            answer_from_section,
            (&section as *const BTreeMap<CString, CString>).cast::<OSSL_CORE_HANDLE>(),
        )
    };
    let Ok(settings) = Settings::from_sources(&values, |_| None) else {
        return;
    };
    let target = settings.target;
    let _ = (target.applet_config(), target.card_identity());
    let merged = crate::iotsafe::Target::default().overlay(&target);
    assert_eq!(merged, target, "overlay on nothing changes nothing");
    let uri = KeyUri {
        target,
        object: None,
    };
    uri_round_trip(&uri.to_string());
}

/// A core's get_params over a section map (the handle): sets each asked-for key it has.
unsafe extern "C" fn answer_from_section(
    handle: *const OSSL_CORE_HANDLE,
    params: *mut OSSL_PARAM,
) -> c_int {
    // SAFETY: `handle` is the map `openssl_cnf` passed; `params` ends with a null key.
    unsafe {
        let section = &*handle.cast::<BTreeMap<CString, CString>>();
        let mut p = params;
        while !(*p).key.is_null() {
            if let Some(value) = section.get(CStr::from_ptr((*p).key)) {
                if crate::provider::ffi::OSSL_PARAM_set_utf8_ptr(p, value.as_ptr()) != 1 {
                    return 0;
                }
            }
            p = p.add(1);
        }
    }
    1
}
