//! Codec tests against the APDU traces real cards published (see the project's reference on
//! the applet): the host must send exactly those bytes and understand those answers.

use super::*;
use crate::testing::{Script, Step};
use iotsafe_hex::decode;

const OPEN_CHANNEL_1: (&str, &str) = ("0070000001", "019000");
const SELECT_GSMA_ON_1: (&str, &str) = ("01A4040007A0000005590010", "9000");

fn applet(script: &Script, cla_style: ClaStyle) -> Applet {
    let config = AppletConfig {
        cla_style,
        ..AppletConfig::default()
    };
    Applet::new(Box::new(script.clone()), config)
}

fn zariot_point() -> String {
    let x: String = (0..32).map(|i| format!("{:02X}", i + 1)).collect();
    let y: String = (0..32).map(|i| format!("{:02X}", 0x80 + i)).collect();
    format!("04{x}{y}")
}

#[test]
fn zariot_keygen_trace() {
    let answer = format!("84033030318503303032 34454943 8641 {} 9000", zariot_point());
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("81B900000584033030 31", "6151"),
        ("81C0000051", answer.as_str()),
    ]);
    let key = applet(&script, ClaStyle::Proprietary)
        .generate_key_pair(&ObjectRef::Id(b"001".to_vec()))
        .unwrap();
    assert_eq!(key.private_id, b"001");
    assert_eq!(key.public_id, b"002");
    assert_eq!(hex::encode(&key.point), zariot_point());
    assert_eq!(script.remaining(), 0);
}

#[test]
fn zariot_sign_trace_with_long_signature_length() {
    let digest: String = "AB".repeat(32);
    let rs: String = (0..64).map(|i| format!("{:02X}", 0x40 + i)).collect();
    let update = format!("812B8001229E20{digest}");
    let answer = format!("330040{rs}9000");
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("812A00010F84033030 31A10103910200019201 04", "9000"),
        (update.as_str(), "6143"),
        ("81C0000043", answer.as_str()),
    ]);
    let der = applet(&script, ClaStyle::Proprietary)
        .sign_digest(
            &ObjectRef::Id(b"001".to_vec()),
            HashAlg::Sha256,
            &[0xAB; 32],
        )
        .unwrap();
    assert_eq!(der, ecdsa::der_from_raw(&decode(&rs).unwrap()));
}

#[test]
fn orange_sign_init_with_two_byte_id_in_full_text_mode() {
    let rs = "11".repeat(64);
    let answer = format!("3340{rs}9000");
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("012A00010E84021234A101019102000192 0104", "9000"),
        ("012B8001059E03616263", answer.as_str()),
    ]);
    applet(&script, ClaStyle::Interindustry)
        .sign_message(&ObjectRef::Id(vec![0x12, 0x34]), HashAlg::Sha256, b"abc")
        .unwrap();
}

#[test]
fn steady_state_signature_is_two_apdus() {
    let ok_sig = format!("3340{}9000", "22".repeat(64));
    let init = "012A0001 0D 840101 A10103 91020001 920104";
    let update = format!("012B8001229E20{}", "00".repeat(32));
    let mut steps = vec![OPEN_CHANNEL_1, SELECT_GSMA_ON_1];
    for _ in 0..3 {
        steps.push((init, "9000"));
        steps.push((update.as_str(), ok_sig.as_str()));
    }
    let script = Script::new(&steps);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    for _ in 0..3 {
        applet
            .sign_digest(&ObjectRef::Id(vec![1]), HashAlg::Sha256, &[0; 32])
            .unwrap();
    }
    assert_eq!(script.remaining(), 0);
}

#[test]
fn failed_update_closes_the_session_and_names_the_status() {
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("012A00010D840101A1010391020001920104", "9000"),
        (
            format!("012B8001229E20{}", "00".repeat(32)).as_str(),
            "6985",
        ),
        ("012A0101", "9000"),
    ]);
    let err = applet(&script, ClaStyle::Interindustry)
        .sign_digest(&ObjectRef::Id(vec![1]), HashAlg::Sha256, &[0; 32])
        .unwrap_err();
    assert_eq!(err.status_word(), Some(0x6985));
    assert!(
        err.to_string().contains("conditions of use not satisfied"),
        "{err}"
    );
    assert_eq!(script.remaining(), 0, "the session close was sent");
}

#[test]
fn unknown_key_is_a_not_found_error_naming_the_key() {
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("012A00010D840107A1010391020001920104", "6A82"),
    ]);
    let err = applet(&script, ClaStyle::Interindustry)
        .sign_digest(&ObjectRef::Id(vec![7]), HashAlg::Sha256, &[0; 32])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "private key id 07 not found on the applet (SW 6A82)"
    );
}

#[test]
fn aid_list_falls_back_to_the_next_aid() {
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        ("01A4040007A0000005590010", "6A82"),
        ("01A404000FA0000000305 3F1240177010149 5341", "9000"),
        ("018400000 8", "01020304050607089000"),
    ]);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    assert_eq!(applet.random(8).unwrap(), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(applet.selected_aid(), Some(AID_THALES));
}

#[test]
fn no_logical_channel_falls_back_to_the_basic_channel() {
    let script = Script::new(&[
        ("0070000001", "6881"),
        ("00A4040007A0000005590010", "9000"),
        ("8084000004", "0A0B0C0D9000"),
    ]);
    let mut applet = applet(&script, ClaStyle::Proprietary);
    assert_eq!(applet.random(4).unwrap(), [0x0A, 0x0B, 0x0C, 0x0D]);
}

#[test]
fn object_list_follows_6300_paging_and_file_is_read_in_steps() {
    let file: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    let first = "C10C840101740444455649 4B0113";
    let second = "C307 830102 2002012C";
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("01CB010000", format!("{first}6300").as_str()),
        ("01CB010100", format!("{second}9000").as_str()),
        ("01CBC3000383010200", "830102200 2012C9000"),
        (
            "01B0000003830102 00",
            format!("{}9000", hex::encode(&file[..256])).as_str(),
        ),
        (
            "01B001000383010 22C",
            format!("{}9000", hex::encode(&file[256..])).as_str(),
        ),
    ]);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    let objects = applet.objects().unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0].label.as_deref(), Some("DEVI"));
    assert_eq!(objects[1].size, Some(300));
    assert_eq!(applet.read_file(&ObjectRef::Id(vec![2])).unwrap(), file);
}

#[test]
fn malformed_public_key_is_a_clear_error_not_a_panic() {
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("01CD000003850101", "3445494386410 49000"),
    ]);
    let err = applet(&script, ClaStyle::Interindustry)
        .read_public_key(&ObjectRef::Id(vec![1]))
        .unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("malformed answer to READ PUBLIC KEY (public key id 01)"),
        "{err}"
    );
}

#[test]
fn truncated_response_without_status_word_is_an_error() {
    let script = Script::new(&[OPEN_CHANNEL_1, SELECT_GSMA_ON_1, ("0184000004", "90")]);
    let err = applet(&script, ClaStyle::Interindustry)
        .random(4)
        .unwrap_err();
    assert!(
        err.to_string().contains("at least the status word"),
        "{err}"
    );
}

#[test]
fn wrong_digest_length_is_refused_before_any_apdu() {
    let script = Script::new(&[]);
    let err = applet(&script, ClaStyle::Interindustry)
        .sign_digest(&ObjectRef::Id(vec![1]), HashAlg::Sha384, &[0; 32])
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}

#[test]
fn random_count_is_bounded_before_any_apdu() {
    let script = Script::new(&[]);
    let err = applet(&script, ClaStyle::Interindustry)
        .random(99_999_999_999_999)
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("at most 65536"), "{err}");
}

/// GET DATA for file id 02, answered with these attributes.
fn file_object(size_hex: &str) -> (String, String) {
    let size_len = size_hex.len() / 2;
    let attributes = format!("830102 20{size_len:02X}{size_hex}");
    (
        "01CBC3000383010200".to_string(),
        format!("{attributes}9000"),
    )
}

#[test]
fn absurd_file_sizes_are_refused_before_reading() {
    for size in [
        "FFFFFFFFFF",
        "FFFFFFFFFFFFFFFF",
        "01FFFFFFFFFFFFFFFF",
        "4001",
    ] {
        let (get, answer) = file_object(size);
        let script = Script::new(&[OPEN_CHANNEL_1, SELECT_GSMA_ON_1, (&get, &answer)]);
        let err = applet(&script, ClaStyle::Interindustry)
            .read_file(&ObjectRef::Id(vec![2]))
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::Malformed { .. }), "{size}: {message}");
        assert!(
            message.contains("file id 02") && message.contains("more than the 16384 bytes"),
            "{size}: {message}"
        );
        assert_eq!(script.remaining(), 0, "{size}: no READ FILE was sent");
    }
    let (get, answer) = file_object("FFFFFFFFFF");
    let err = applet(
        &Script::new(&[OPEN_CHANNEL_1, SELECT_GSMA_ON_1, (&get, &answer)]),
        ClaStyle::Interindustry,
    )
    .read_file(&ObjectRef::Id(vec![2]))
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("announces 1099511627775 bytes (tag 20)"),
        "{err}"
    );
}

#[test]
fn a_file_of_the_largest_size_is_read() {
    let (get, answer) = file_object("4000");
    let mut steps = vec![
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        (get.as_str(), answer.as_str()),
    ];
    let block = format!("{}9000", "5A".repeat(256));
    let commands: Vec<String> = (0..MAX_FILE_SIZE / 256)
        .map(|i| format!("01B0{:04X}0383010200", i * 256))
        .collect();
    for command in &commands {
        steps.push((command.as_str(), block.as_str()));
    }
    let script = Script::new(&steps);
    let content = applet(&script, ClaStyle::Interindustry)
        .read_file(&ObjectRef::Id(vec![2]))
        .unwrap();
    assert_eq!(content.len(), MAX_FILE_SIZE);
}

#[test]
fn an_oversized_public_key_is_refused() {
    let point = format!("04{}", "11".repeat(200));
    let answer = format!("3481CF 4981CC 8681C9{point}9000");
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("01CD000003850101", answer.as_str()),
    ]);
    let err = applet(&script, ClaStyle::Interindustry)
        .read_public_key(&ObjectRef::Id(vec![1]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not an uncompressed EC point (201 bytes)"),
        "{err}"
    );
}

#[test]
fn an_oversized_signature_is_refused() {
    let answer = format!("33 8186 {} 9000", "22".repeat(134));
    let update = format!("012B8001229E20{}", "00".repeat(32));
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("012A00010D840101A1010391020001920104", "9000"),
        (update.as_str(), answer.as_str()),
        ("012A0101", "9000"),
    ]);
    let err = applet(&script, ClaStyle::Interindustry)
        .sign_digest(&ObjectRef::Id(vec![1]), HashAlg::Sha256, &[0; 32])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a raw ECDSA signature of 134 bytes"),
        "{err}"
    );
}

#[test]
fn absurd_counts_in_object_lists_and_applet_information_do_not_panic() {
    // A file whose size (2^64) has nine bytes, and applet limits of eight and nine: too large
    // counts saturate (the size does not wrap to 0) and the bounds of their users refuse them.
    let list = "C311 830102 2009010000000000000000 210102";
    let info = "B108FFFFFFFFFFFFFFFF B709FFFFFFFFFFFFFFFFFF";
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("01CB010000", format!("{list}9000").as_str()),
        ("01CB000000", format!("{info}9000").as_str()),
    ]);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    let objects = applet.objects().unwrap();
    assert_eq!(objects[0].size, Some(usize::MAX));
    let info = applet.info().unwrap();
    assert_eq!(info.max_objects[0], Some(usize::MAX));
    assert_eq!(info.max_sessions, Some(usize::MAX));
}

/// GET DATA for public key id 01 and READ PUBLIC KEY, answered with `attributes` and the
/// ZARIOT point.
fn public_key_steps(attributes: &str) -> Vec<(String, String)> {
    vec![
        ("01CBC2000385010100".into(), format!("{attributes}9000")),
        (
            "01CD000003850101".into(),
            format!("34454943 8641 {} 9000", zariot_point()),
        ),
    ]
}

fn public_key_of(attributes: &str) -> Result<PublicKey> {
    let steps = public_key_steps(attributes);
    let mut all = vec![OPEN_CHANNEL_1, SELECT_GSMA_ON_1];
    all.extend(steps.iter().map(|(c, a)| (c.as_str(), a.as_str())));
    let script = Script::new(&all);
    applet(&script, ClaStyle::Interindustry).public_key(&ObjectRef::Id(vec![1]))
}

#[test]
fn the_card_names_the_curve_of_a_public_key() {
    for (key_type, curve) in [
        ("13", Curve::P256),
        ("14", Curve::P256),
        ("23", Curve::BrainpoolP256r1),
        ("24", Curve::BrainpoolP256r1),
    ] {
        let public = public_key_of(&format!("850101 4B01{key_type} 610105")).unwrap();
        assert_eq!(public.curve, curve, "key type {key_type}");
        assert_eq!(hex::encode(&public.point), zariot_point());
    }
    // An applet that names no key type holds a key on the curve every applet supports.
    assert_eq!(public_key_of("850101").unwrap().curve, Curve::P256);
}

#[test]
fn a_key_type_that_is_not_a_supported_curve_is_refused_by_name() {
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("01CBC2000385010100", "850101 4B0103 9000"),
    ]);
    let err = applet(&script, ClaStyle::Interindustry)
        .public_key(&ObjectRef::Id(vec![1]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("public key id 01 has key type 03 (RSA-2048), not an EC curve"),
        "{err}"
    );
}

#[test]
fn an_applet_without_single_object_get_data_holds_p256_keys() {
    let read = format!("34454943 8641 {} 9000", zariot_point());
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("01CBC2000385010100", "6A86"),
        ("01CD000003850101", &read),
    ]);
    let public = applet(&script, ClaStyle::Interindustry)
        .public_key(&ObjectRef::Id(vec![1]))
        .unwrap();
    assert_eq!(public.curve, Curve::P256);
    // A key that is not there is not guessed at.
    let script = Script::new(&[
        OPEN_CHANNEL_1,
        SELECT_GSMA_ON_1,
        ("01CBC2000385010900", "6A82"),
    ]);
    let err = applet(&script, ClaStyle::Interindustry)
        .public_key(&ObjectRef::Id(vec![9]))
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[test]
fn a_reset_card_is_recovered_and_the_applet_selected_again() {
    let script = Script::of(vec![
        Step::apdu("0070000001", "019000"),
        Step::apdu("01A4040007A0000005590010", "9000"),
        Step::apdu_fails(
            "0184000004",
            Error::CardReset {
                reader: "script".into(),
            },
        ),
        Step::Recover(Ok(())),
        Step::apdu("0070000001", "029000"),
        Step::apdu("02A4040007A0000005590010", "9000"),
        Step::apdu("0284000004", "0A0B0C0D9000"),
    ]);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    assert_eq!(applet.random(4).unwrap(), [0x0A, 0x0B, 0x0C, 0x0D]);
}

#[test]
fn a_card_lost_twice_reports_the_first_loss() {
    let absent = || Error::CardAbsent {
        reader: "script".into(),
    };
    let script = Script::of(vec![
        Step::apdu("0070000001", "019000"),
        Step::apdu("01A4040007A0000005590010", "9000"),
        Step::apdu_fails("0184000004", absent()),
        Step::Recover(Ok(())),
        Step::LinkFails(Error::CardReset {
            reader: "script".into(),
        }),
    ]);
    let err = applet(&script, ClaStyle::Interindustry)
        .random(4)
        .unwrap_err();
    assert_eq!(err, absent());
}

/// ISO 7816-4 5.4.1: channels 0..=3 in the first interindustry class bytes, 4..=19 in the
/// further ones (`4x`, x = channel - 4); the proprietary style sets b8 on either.
#[test]
fn class_bytes_of_all_twenty_channels() {
    let interindustry: Vec<u8> = (0..20).map(interindustry_cla).collect();
    let mut expected = vec![0x00, 0x01, 0x02, 0x03];
    expected.extend(0x40..=0x4F);
    assert_eq!(interindustry, expected);
    let proprietary: Vec<u8> = (0..20)
        .map(|channel| applet_cla(ClaStyle::Proprietary, channel))
        .collect();
    let mut expected = vec![0x80, 0x81, 0x82, 0x83];
    expected.extend(0xC0..=0xCF);
    assert_eq!(proprietary, expected);
}

/// A UICC whose first 18 logical channels are taken by other hosts gives ours channel 19:
/// SELECT, the applet's commands and GET RESPONSE carry class byte 4F (CF proprietary), and
/// the channel is closed from the basic channel when the applet goes.
#[test]
fn channel_nineteen_is_addressed_with_the_further_class_byte() {
    let rs = "33".repeat(64);
    let answer = format!("330040{rs}9000");
    let update = format!("CF2B8001229E20{}", "AB".repeat(32));
    let script = Script::new(&[
        ("0070000001", "139000"),
        ("4FA4040007A0000005590010", "9000"),
        ("CF2A00010D840101A1010391020001920104", "9000"),
        (update.as_str(), "6143"),
        ("CFC0000043", answer.as_str()),
    ]);
    let mut applet = applet(&script, ClaStyle::Proprietary);
    let der = applet
        .sign_digest(&ObjectRef::Id(vec![1]), HashAlg::Sha256, &[0xAB; 32])
        .unwrap();
    assert_eq!(der, ecdsa::der_from_raw(&decode(&rs).unwrap()));
    drop(applet);
    assert_eq!(script.past_the_end(), ["00708013"]);
}

#[test]
fn channel_four_interindustry_signature() {
    let rs = "44".repeat(64);
    let answer = format!("3340{rs}9000");
    let update = format!("402B8001229E20{}", "00".repeat(32));
    let script = Script::new(&[
        ("0070000001", "049000"),
        ("40A404000FA00000003053F12401770101495341", "9000"),
        ("402A00010D840101A1010391020001920104", "9000"),
        (update.as_str(), answer.as_str()),
    ]);
    let config = AppletConfig {
        aids: vec![AID_THALES.to_vec()],
        ..AppletConfig::default()
    };
    let mut applet = Applet::new(Box::new(script.clone()), config);
    applet
        .sign_digest(&ObjectRef::Id(vec![1]), HashAlg::Sha256, &[0; 32])
        .unwrap();
    drop(applet);
    assert_eq!(script.past_the_end(), ["00708004"]);
}

/// A transport that opens the channel with the applet selected (a modem's AT+CCHO): the
/// session sends neither MANAGE CHANNEL nor SELECT, addresses that channel, tries the next AID
/// when one is refused, and gives the channel back to the transport.
#[test]
fn a_channel_the_transport_opens_is_used_as_it_is_and_given_back() {
    use crate::transport::ChannelOpening;
    let update = format!("022B8001229E20{}", "00".repeat(32));
    let answer = format!("3340{}9000", "22".repeat(64));
    let script = Script::of(vec![
        Step::OpenChannel {
            aid: AID_GSMA.to_vec(),
            answer: ChannelOpening::Refused("+CME ERROR: 22".into()),
        },
        Step::OpenChannel {
            aid: AID_THALES.to_vec(),
            answer: ChannelOpening::Opened(2),
        },
        Step::apdu("022A00010D840101A1010391020001920104", "9000"),
        Step::apdu(&update, &answer),
        Step::CloseChannel(2),
    ]);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    applet
        .sign_digest(&ObjectRef::Id(vec![1]), HashAlg::Sha256, &[0; 32])
        .unwrap();
    assert_eq!(applet.selected_aid(), Some(AID_THALES));
    drop(applet);
    assert_eq!(script.remaining(), 0);
}

/// When the transport opens a channel for no AID, the session opens its own.
#[test]
fn a_transport_that_opens_no_channel_leaves_it_to_the_session() {
    use crate::transport::ChannelOpening;
    let refused = |aid: &[u8]| Step::OpenChannel {
        aid: aid.to_vec(),
        answer: ChannelOpening::Refused("+CME ERROR: 3".into()),
    };
    let script = Script::of(vec![
        refused(AID_GSMA),
        refused(AID_THALES),
        refused(AID_CIRA),
        Step::apdu(OPEN_CHANNEL_1.0, OPEN_CHANNEL_1.1),
        Step::apdu(SELECT_GSMA_ON_1.0, SELECT_GSMA_ON_1.1),
        Step::apdu("0184000008", "01020304050607089000"),
        Step::apdu("00708001", "9000"),
    ]);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    assert_eq!(applet.random(8).unwrap(), [1, 2, 3, 4, 5, 6, 7, 8]);
    drop(applet);
    assert_eq!(script.remaining(), 0);
}

/// A steady-state signature on channel 1: INIT and UPDATE, and the signature answer.
fn signature_steps() -> Vec<Step> {
    let update = format!("012B8001229E20{}", "AB".repeat(32));
    let answer = format!("3340{}9000", "11".repeat(64));
    vec![
        Step::apdu("012A00010D840101A10103910200019201 04", "9000"),
        Step::apdu(&update, &answer),
    ]
}

fn sign(applet: &mut Applet) -> Result<Vec<u8>> {
    applet.sign_digest(&ObjectRef::Id(vec![1]), HashAlg::Sha256, &[0xAB; 32])
}

/// SELECT by AID with no response data on channel 1: the check at a new exclusive period.
const CONFIRM_ON_1: &str = "01A4040C07A0000005590010";

fn selected_on_channel_1() -> Vec<Step> {
    vec![
        Step::apdu(OPEN_CHANNEL_1.0, OPEN_CHANNEL_1.1),
        Step::apdu(SELECT_GSMA_ON_1.0, SELECT_GSMA_ON_1.1),
    ]
}

#[test]
fn a_kept_exclusive_period_signs_without_a_check() {
    let mut steps = selected_on_channel_1();
    steps.extend(signature_steps());
    steps.extend(signature_steps());
    let script = Script::of(steps);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    sign(&mut applet).unwrap();
    sign(&mut applet).unwrap();
}

#[test]
fn a_new_exclusive_period_confirms_the_selection_with_one_apdu() {
    let mut steps = selected_on_channel_1();
    steps.push(Step::NewPeriod);
    steps.push(Step::apdu(CONFIRM_ON_1, "9000"));
    steps.extend(signature_steps());
    let script = Script::of(steps);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    applet.select().unwrap();
    sign(&mut applet).unwrap();
}

#[test]
fn a_channel_closed_by_another_host_is_reopened_at_the_next_period() {
    let mut steps = selected_on_channel_1();
    steps.push(Step::NewPeriod);
    // Another host closed channel 1: the card no longer knows it.
    steps.push(Step::apdu(CONFIRM_ON_1, "6881"));
    steps.extend(selected_on_channel_1());
    steps.extend(signature_steps());
    let script = Script::of(steps);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    applet.select().unwrap();
    sign(&mut applet).unwrap();
}

#[test]
fn a_channel_lost_within_a_kept_period_is_confirmed_and_the_operation_retried() {
    // No new period was signalled (a transport that cannot tell), but the card answers as
    // a closed channel does: the selection is confirmed, made anew, and the INIT sent again.
    let mut steps = selected_on_channel_1();
    steps.push(Step::apdu("012A00010D840101A10103910200019201 04", "6881"));
    steps.push(Step::apdu(CONFIRM_ON_1, "6881"));
    steps.extend(selected_on_channel_1());
    steps.extend(signature_steps());
    let script = Script::of(steps);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    applet.select().unwrap();
    sign(&mut applet).unwrap();
}

#[test]
fn a_foreign_applet_on_our_channel_is_replaced_by_ours_and_the_operation_retried() {
    let mut steps = selected_on_channel_1();
    // Another applet now sits on channel 1 and knows none of our instructions.
    steps.push(Step::apdu("012A00010D840101A10103910200019201 04", "6D00"));
    steps.push(Step::apdu(CONFIRM_ON_1, "9000"));
    steps.extend(signature_steps());
    let script = Script::of(steps);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    applet.select().unwrap();
    sign(&mut applet).unwrap();
}

#[test]
fn a_refusal_after_a_confirmed_selection_is_the_applets_and_stands() {
    let mut steps = selected_on_channel_1();
    steps.push(Step::NewPeriod);
    steps.push(Step::apdu(CONFIRM_ON_1, "9000"));
    steps.push(Step::apdu("012A00010D840101A10103910200019201 04", "6D00"));
    let script = Script::of(steps);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    applet.select().unwrap();
    let err = sign(&mut applet).unwrap_err();
    assert_eq!(err.status_word(), Some(0x6D00), "{err}");
}

#[test]
fn a_channel_that_cannot_be_won_back_is_reported_as_taken() {
    let mut steps = selected_on_channel_1();
    steps.push(Step::NewPeriod);
    steps.push(Step::apdu(CONFIRM_ON_1, "6881"));
    // No channel left, and the basic channel does not find the applet either.
    steps.push(Step::apdu("0070000001", "6A81"));
    steps.push(Step::apdu("00A4040007A0000005590010", "6A82"));
    steps.push(Step::apdu(
        "00A404000FA00000003053F1240177010149 5341",
        "6A82",
    ));
    steps.push(Step::apdu("00A4040007A0000002480400", "6A82"));
    let script = Script::of(steps);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    applet.select().unwrap();
    let err = sign(&mut applet).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("channel 1 no longer holds the applet A0000005590010 (SW 6881")
            && text.contains("another host"),
        "{text}"
    );
}

/// A card that refuses the confirming SELECT's form (P2 0C) or fails it for a moment has not
/// lost our channel: the refusal is reported, and no other channel is opened (one per new
/// period would leak channels until none is left).
#[test]
fn a_refused_confirmation_opens_no_other_channel() {
    let mut steps = selected_on_channel_1();
    steps.push(Step::NewPeriod);
    steps.push(Step::apdu(CONFIRM_ON_1, "6A86"));
    let script = Script::of(steps);
    let mut applet = applet(&script, ClaStyle::Interindustry);
    applet.select().unwrap();
    let err = sign(&mut applet).unwrap_err();
    assert!(matches!(err, Error::Refused { sw: 0x6A86, .. }), "{err}");
    drop(applet);
    assert!(
        !script
            .past_the_end()
            .iter()
            .any(|c| c.starts_with("0070000001")),
        "no channel opened: {:?}",
        script.past_the_end()
    );
}
