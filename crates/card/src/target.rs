//! Which card, applet and objects to use: the reader or modem, the applet's AID(s), class byte
//! and channel, and the key, public key, certificate and ECDH peer slot.
//!
//! Every attribute is one row of [`ATTRIBUTES`]: its name (in openssl.cnf, `iotsafe:` URIs and
//! key references), its environment variable, and how its value is parsed, printed and
//! overlaid. Adding an attribute is one row here and one field of [`Target`]: the provider's
//! configuration and environment, URIs and key references follow from the table. The
//! command-line tool offers a chosen set of attributes as options (an option there is one more
//! field of its own) and sets each through the table.
//!
//! | name              | environment          | meaning                                      |
//! |-------------------|----------------------|----------------------------------------------|
//! | `reader`          | `IOTSAFE_READER`     | first reader whose name contains this text   |
//! | `modem`           | `IOTSAFE_MODEM`      | reach the SIM through this modem AT port (AT+CCHO/AT+CGLA, else AT+CSIM) instead of PC/SC |
//! | `aid`             | `IOTSAFE_AID`        | applet AID(s) in hex, comma-separated        |
//! | `cla-style`       | `IOTSAFE_CLA_STYLE`  | `00` or `80`: class byte of applet commands  |
//! | `channel`         | `IOTSAFE_CHANNEL`    | `logical` (default) or `basic`               |
//! | `key-id`/`key-label` | `IOTSAFE_KEY_ID`/`IOTSAFE_KEY_LABEL` | the private key           |
//! | `pub-id`/`pub-label` | `IOTSAFE_PUB_ID`/`IOTSAFE_PUB_LABEL` | its public key (default: same id/label) |
//! | `cert-id`/`cert-label` | `IOTSAFE_CERT_ID`/`IOTSAFE_CERT_LABEL` | the certificate file  |
//! | `dh-peer-id`      | `IOTSAFE_DH_PEER_ID` | public key slot for the ECDH peer            |

use super::applet::{Applet, AppletConfig, ChannelMode, ClaStyle};
use super::error::Result;
use super::objects::ObjectRef;
use iotsafe_hex as hex;

/// The card target: each attribute is `None` where its source did not give it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub reader: Option<String>,
    /// A modem's AT command port: the transport instead of PC/SC.
    pub modem: Option<String>,
    pub aids: Option<Vec<Vec<u8>>>,
    pub cla_style: Option<ClaStyle>,
    pub channel: Option<ChannelMode>,
    pub key: Option<ObjectRef>,
    pub public: Option<ObjectRef>,
    pub cert: Option<ObjectRef>,
    pub dh_peer: Option<ObjectRef>,
}

/// One attribute of a [`Target`].
pub struct Attribute {
    /// Its name in openssl.cnf, URIs and key references.
    pub name: &'static str,
    /// The environment variable that sets it.
    pub env: &'static str,
    /// Sets the attribute's field from its text; the error names what is wrong.
    parse: fn(&mut Target, &str) -> std::result::Result<(), String>,
    /// The attribute's text, when its field holds a value this attribute names.
    print: fn(&Target) -> Option<String>,
    /// Fills `out`'s field from `base` where `top` (the overlay that `out` started as) leaves it.
    inherit: fn(out: &mut Target, top: &Target, base: &Target),
}

/// A row for a field whose value one attribute parses and prints (`parse` gets the
/// attribute's name for its messages; `print` returns `None` for values another attribute
/// of the same field prints).
macro_rules! attribute {
    ($name:literal, $env:literal, $field:ident, $parse:expr, $print:expr) => {
        Attribute {
            name: $name,
            env: $env,
            parse: |target, value| {
                target.$field = Some($parse($name, value)?);
                Ok(())
            },
            print: |target| target.$field.as_ref().and_then(|value| $print(value)),
            inherit: |out, _, base| {
                if out.$field.is_none() {
                    out.$field = base.$field.clone();
                }
            },
        }
    };
}

/// The public key's rows: an overlay that names another key without its public half means
/// that key's own public key, not the public key of the layer below.
macro_rules! public_attribute {
    ($name:literal, $env:literal, $parse:expr, $print:expr) => {
        Attribute {
            inherit: |out, top, base| {
                if top.public.is_none() && top.key.is_none() {
                    out.public = base.public.clone();
                }
            },
            ..attribute!($name, $env, public, $parse, $print)
        }
    };
}

/// Every attribute, in the order URIs print them.
#[rustfmt::skip]
pub const ATTRIBUTES: &[Attribute] = &[
    attribute!("reader", "IOTSAFE_READER", reader, text, print_text),
    attribute!("modem", "IOTSAFE_MODEM", modem, text, print_text),
    attribute!("aid", "IOTSAFE_AID", aids, aid_list, print_aid_list),
    attribute!("cla-style", "IOTSAFE_CLA_STYLE", cla_style, cla_style, print_cla_style),
    // An explicit `logical` is printed too: it overrides a `basic` in openssl.cnf.
    attribute!("channel", "IOTSAFE_CHANNEL", channel, channel, print_channel),
    attribute!("key-id", "IOTSAFE_KEY_ID", key, object_id, print_id),
    attribute!("key-label", "IOTSAFE_KEY_LABEL", key, object_label, print_label),
    public_attribute!("pub-id", "IOTSAFE_PUB_ID", object_id, print_id),
    public_attribute!("pub-label", "IOTSAFE_PUB_LABEL", object_label, print_label),
    attribute!("cert-id", "IOTSAFE_CERT_ID", cert, object_id, print_id),
    attribute!("cert-label", "IOTSAFE_CERT_LABEL", cert, object_label, print_label),
    // Only an id names a peer slot: PUT PUBLIC KEY needs a slot the applet knows by number.
    attribute!("dh-peer-id", "IOTSAFE_DH_PEER_ID", dh_peer, object_id, print_id),
];

fn text(_: &str, value: &str) -> std::result::Result<String, String> {
    Ok(value.to_string())
}

fn aid_list(name: &str, value: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    let aids = value
        .split(',')
        .map(|aid| hex::decode(aid.trim()).map_err(|e| format!("{name} '{aid}': {e}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if aids.iter().any(|a| a.len() < 5 || a.len() > 16) {
        return Err(format!("{name} '{value}': an AID has 5 to 16 bytes"));
    }
    Ok(aids)
}

fn cla_style(name: &str, value: &str) -> std::result::Result<ClaStyle, String> {
    ClaStyle::from_name(value).ok_or_else(|| format!("{name} must be 00 or 80, not '{value}'"))
}

fn channel(name: &str, value: &str) -> std::result::Result<ChannelMode, String> {
    ChannelMode::from_name(value)
        .ok_or_else(|| format!("{name} must be logical or basic, not '{value}'"))
}

fn object_id(name: &str, value: &str) -> std::result::Result<ObjectRef, String> {
    ObjectRef::id_from_hex(value).map_err(|e| format!("{name}: {e}"))
}

fn object_label(name: &str, value: &str) -> std::result::Result<ObjectRef, String> {
    if value.is_empty() {
        return Err(format!("{name}: empty label"));
    }
    Ok(ObjectRef::Label(value.to_string()))
}

fn print_text(text: &str) -> Option<String> {
    Some(text.to_string())
}

fn print_aid_list(aids: &[Vec<u8>]) -> Option<String> {
    let aids: Vec<String> = aids.iter().map(|aid| hex::encode(aid)).collect();
    Some(aids.join(","))
}

fn print_cla_style(style: &ClaStyle) -> Option<String> {
    Some(style.name().to_string())
}

fn print_channel(mode: &ChannelMode) -> Option<String> {
    Some(mode.name().to_string())
}

fn print_id(object: &ObjectRef) -> Option<String> {
    match object {
        ObjectRef::Id(id) => Some(hex::encode(id)),
        ObjectRef::Label(_) => None,
    }
}

fn print_label(object: &ObjectRef) -> Option<String> {
    match object {
        ObjectRef::Label(label) => Some(label.clone()),
        ObjectRef::Id(_) => None,
    }
}

/// The row of an attribute name.
pub fn attribute(name: &str) -> Option<&'static Attribute> {
    ATTRIBUTES.iter().find(|a| a.name == name)
}

impl Target {
    /// Sets one attribute from its text (surrounding white space ignored).
    pub fn set(&mut self, name: &str, value: &str) -> std::result::Result<(), String> {
        let attribute = attribute(name).ok_or_else(|| format!("unknown attribute '{name}'"))?;
        (attribute.parse)(self, value.trim())
    }

    /// Every attribute that has a value, as `(name, text)`, in table order; [`Target::set`]
    /// reads each back to the same value.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        ATTRIBUTES
            .iter()
            .filter_map(|a| (a.print)(self).map(|text| (a.name, text)))
            .collect()
    }

    /// These attributes where given, `base`'s elsewhere (a URI over the environment over
    /// openssl.cnf).
    pub fn overlay(&self, base: &Target) -> Target {
        let mut out = self.clone();
        for attribute in ATTRIBUTES {
            (attribute.inherit)(&mut out, self, base);
        }
        out
    }

    /// How to address the applet.
    pub fn applet_config(&self) -> AppletConfig {
        let mut config = AppletConfig::default();
        if let Some(aids) = &self.aids {
            config.aids = aids.clone();
        }
        if let Some(style) = self.cla_style {
            config.cla_style = style;
        }
        if let Some(channel) = self.channel {
            config.channel = channel;
        }
        config
    }

    /// Identifies the card connection this target reaches: targets that differ only in the
    /// objects they name share one connection.
    pub fn card_identity(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}",
            self.reader,
            self.modem,
            self.applet_config()
        )
    }

    /// [`Target::card_identity`] with the reader filter or modem path resolved where that can
    /// be done without touching a card: a reader filter (or none) that matches exactly one
    /// reader with a card in it stands for that reader's name, and a modem path for the port
    /// it links to. Key references that name one card differently (`reader = Virtual` and no
    /// reader at all, on a host with one reader) then share one connection, and one logical
    /// channel, instead of each opening its own. One query to pcscd; when it cannot answer, the
    /// filter stands as written.
    pub fn resolved_card_identity(&self) -> String {
        let mut resolved = self.clone();
        match &self.modem {
            Some(modem) => {
                if let Ok(port) = std::fs::canonicalize(modem) {
                    resolved.modem = Some(port.display().to_string());
                }
            }
            None => {
                let filter = self.reader.as_deref();
                if let Ok(readers) = crate::transport::pcsc::reader_presence() {
                    let mut with_card = readers.into_iter().filter(|(name, present)| {
                        *present && filter.is_none_or(|f| name.contains(f))
                    });
                    if let (Some((name, _)), None) = (with_card.next(), with_card.next()) {
                        resolved.reader = Some(name);
                    }
                }
            }
        }
        resolved.card_identity()
    }

    /// Opens the applet: behind the modem when one is named, otherwise in the first PC/SC
    /// reader (whose name contains `reader`) that holds a card with one of the AIDs.
    pub fn connect(&self) -> Result<Applet> {
        match &self.modem {
            Some(modem) => Applet::open_modem(modem, self.applet_config()),
            None => Applet::open_pcsc(self.reader.as_deref(), self.applet_config()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(attributes: &[(&str, &str)]) -> Target {
        let mut target = Target::default();
        for (name, value) in attributes {
            target.set(name, value).unwrap();
        }
        target
    }

    #[test]
    fn every_attribute_prints_what_it_parses() {
        let all = [
            ("reader", "Virtual PCD"),
            ("modem", "/dev/ttyUSB2"),
            ("aid", "A0000005591010FFFFFFFF8900000100,A000000559"),
            ("cla-style", "80"),
            ("channel", "basic"),
            ("key-id", "01"),
            ("pub-label", "DEVICE PUB"),
            ("cert-label", "DEVICE-CERT"),
            ("dh-peer-id", "11"),
        ];
        let parsed = target(&all);
        let printed = parsed.attributes();
        let expected: Vec<(&str, String)> = all.iter().map(|(n, v)| (*n, v.to_string())).collect();
        assert_eq!(printed, expected);
        let mut again = Target::default();
        for (name, text) in &printed {
            again.set(name, text).unwrap();
        }
        assert_eq!(again, parsed);
        // Every row of the table is in this test's list, once by id or by label.
        for attribute in ATTRIBUTES {
            let field = attribute
                .name
                .trim_end_matches("-id")
                .trim_end_matches("-label");
            assert!(
                all.iter().any(|(name, _)| name.starts_with(field)),
                "{} is not tested",
                attribute.name
            );
        }
    }

    #[test]
    fn an_overlay_wins_where_it_has_a_value() {
        let base = target(&[("reader", "A"), ("cla-style", "80"), ("key-id", "01")]);
        let top = target(&[("reader", "B"), ("key-label", "K")]);
        let merged = top.overlay(&base);
        assert_eq!(merged.reader.as_deref(), Some("B"));
        assert_eq!(merged.cla_style, Some(ClaStyle::Proprietary));
        assert_eq!(merged.key, Some(ObjectRef::Label("K".into())));
        assert_eq!(Target::default().overlay(&merged), merged);
        assert_eq!(merged.overlay(&Target::default()), merged);
    }

    #[test]
    fn a_key_named_on_top_brings_its_own_public_key() {
        let base = target(&[("key-id", "01"), ("pub-id", "03")]);
        let other_key = target(&[("key-id", "05")]);
        assert_eq!(other_key.overlay(&base).public, None);
        let same_key = target(&[("cert-id", "02")]);
        assert_eq!(same_key.overlay(&base).public, Some(ObjectRef::Id(vec![3])));
    }

    #[test]
    fn bad_values_are_refused_naming_the_attribute() {
        for (name, value, reason) in [
            ("aid", "zz", "aid 'zz'"),
            ("aid", "A00000", "an AID has 5 to 16 bytes"),
            ("cla-style", "42", "cla-style must be 00 or 80, not '42'"),
            (
                "channel",
                "wide",
                "channel must be logical or basic, not 'wide'",
            ),
            ("key-id", "", "key-id: "),
            ("cert-label", " ", "cert-label: empty label"),
            ("colour", "blue", "unknown attribute 'colour'"),
        ] {
            let e = Target::default().set(name, value).unwrap_err();
            assert!(e.contains(reason), "{name}={value}: {e}");
        }
    }

    #[test]
    fn the_applet_configuration_follows_the_attributes() {
        let config = target(&[
            ("aid", "A000000559"),
            ("channel", "basic"),
            ("cla-style", "80"),
        ])
        .applet_config();
        assert_eq!(config.aids, vec![vec![0xA0, 0, 0, 0x05, 0x59]]);
        assert_eq!(config.channel, ChannelMode::Basic);
        assert_eq!(config.cla_style, ClaStyle::Proprietary);
        assert_eq!(Target::default().applet_config(), AppletConfig::default());
        let one = target(&[("reader", "A"), ("key-id", "01")]);
        let other = target(&[("reader", "A"), ("key-id", "02")]);
        assert_eq!(one.card_identity(), other.card_identity());
        assert_ne!(
            one.card_identity(),
            target(&[("reader", "B")]).card_identity()
        );
    }
}
