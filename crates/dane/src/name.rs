//! Device names and allowed domains, parsed once into labels.
//!
//! A device's name is text from outside: a peer's `dane_clientid` extension, a certificate's
//! SAN, a command line, a C caller. DNS presentation form has escapes (`\.` is a dot *inside* a
//! label, `\046` any byte) that a resolver honours, so checking the text against an allowed
//! domain and then handing the same text to the resolver lets `x._device.foo\.example.test`
//! pass `example.test` and be looked up in `test.`. Here a name is parsed once, with host-name
//! syntax only, and everything after (the allowed-domain check, the look-up, the SAN comparison,
//! the name reported to the application) uses the parsed labels:
//! - labels of letters, digits and `-` (not first or last), A-labels (`xn--...`) for
//!   internationalised names, matched case-insensitively and kept in lower case;
//! - underscore labels only where the DANCE owner forms have them: `_<service>` first, or
//!   `_device` second;
//! - no escapes, no empty labels, labels of at most 63 and names of at most 253 characters
//!   (one trailing dot is accepted and dropped).

use std::fmt;

use hickory_resolver::proto::rr::Name;

/// Longest name in presentation form without the trailing dot (RFC 1035 §2.3.4, RFC 2181 §11).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// The owner-name forms a device may use (draft-ietf-dance-client-auth §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnerForm {
    /// `_<service>.<client-domain>`, e.g. `_mqtt-client.device1.example.com`.
    Service,
    /// `<device-id>._device.<org-domain>`, e.g. `sensor7._device.example.com`.
    Device,
    /// The plain `<client-domain>`.
    Plain,
}

/// A device's DANE client identity: a host name in one of the [`OwnerForm`]s.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceName {
    /// Lower case, no trailing dot.
    labels: Vec<String>,
    form: OwnerForm,
    /// The same labels as the resolver's name type, fully qualified.
    dns: Name,
}

impl DeviceName {
    /// Parses `text` (see the module documentation for the syntax accepted).
    pub fn parse(text: &str) -> Result<DeviceName, NameError> {
        let fail = |reason: String| NameError::new(text, reason);
        let labels = split_labels(text).map_err(fail)?;
        let form = form_of(&labels).map_err(fail)?;
        for (i, label) in labels.iter().enumerate() {
            let underscore_allowed = match form {
                OwnerForm::Service => i == 0,
                OwnerForm::Device => i == 1,
                OwnerForm::Plain => false,
            };
            check_label(label, underscore_allowed).map_err(fail)?;
        }
        let dns = dns_name(&labels).map_err(fail)?;
        Ok(DeviceName { labels, form, dns })
    }

    pub fn form(&self) -> OwnerForm {
        self.form
    }

    /// Whether the name is `domain` or below it, label by label.
    pub fn is_within(&self, domain: &DomainName) -> bool {
        self.labels.ends_with(&domain.labels)
    }

    /// The name for the resolver (fully qualified, the same labels).
    pub fn dns_name(&self) -> &Name {
        &self.dns
    }
}

/// Presentation form: lower case, no trailing dot. Contains no escapes (no label needs one).
impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.labels.join("."))
    }
}

/// A domain that device names must be at or below (an operator's setting).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DomainName {
    labels: Vec<String>,
}

impl DomainName {
    /// Host-name syntax as for [`DeviceName`]; underscore labels are accepted anywhere (a
    /// domain such as `_device.example.com` is a sensible restriction).
    pub fn parse(text: &str) -> Result<DomainName, NameError> {
        let fail = |reason: String| NameError::new(text, reason);
        let labels = split_labels(text).map_err(fail)?;
        for label in &labels {
            check_label(label, true).map_err(fail)?;
        }
        Ok(DomainName { labels })
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.labels.join("."))
    }
}

/// A server's host name, as a client names the server it connects to: letters, digits and `-`
/// labels only (no underscore labels, no escapes), lower case. Parsed once, so that the TLSA
/// look-up and the PKIX host-name check use the same labels: with escapes honoured by one and
/// not the other, `broker\.example.com` would be looked up under one name and checked against
/// another.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostName {
    labels: Vec<String>,
}

impl HostName {
    pub fn parse(text: &str) -> Result<HostName, NameError> {
        let fail = |reason: String| NameError::new(text, reason);
        let labels = split_labels(text).map_err(fail)?;
        for label in &labels {
            check_label(label, false).map_err(fail)?;
        }
        Ok(HostName { labels })
    }

    /// Fully qualified presentation form (a trailing dot); it needs no escapes.
    pub fn fqdn(&self) -> String {
        format!("{self}.")
    }
}

/// Presentation form: lower case, no trailing dot (what a PKIX host-name check compares).
impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.labels.join("."))
    }
}

/// Why a text is not a name accepted here. Its `Display` names the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameError {
    pub name: String,
    pub reason: String,
}

impl NameError {
    fn new(name: &str, reason: String) -> Self {
        Self {
            name: name.to_string(),
            reason,
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a host name: {}",
            printable(&self.name),
            printable(&self.reason)
        )
    }
}

/// `text` with control characters escaped (`\n`, `\u{1b}`), so that a name from a peer cannot
/// forge lines of a log or report it is written to.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

impl std::error::Error for NameError {}

/// The lower-case labels of `text` (one trailing dot dropped), with the length rules checked.
fn split_labels(text: &str) -> Result<Vec<String>, String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.contains('\\') {
        // Split at the dots first, `foo\.bar` would be reported as a label `foo\`.
        return Err("escapes ('\\') are not accepted".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{} characters, more than {MAX_NAME_LEN}",
            name.len()
        ));
    }
    name.split('.')
        .map(|label| match label.len() {
            0 => Err("empty label (a leading dot or two dots in a row)".to_string()),
            n if n > MAX_LABEL_LEN => Err(format!(
                "label '{label}' has {n} characters, more than {MAX_LABEL_LEN}"
            )),
            _ => Ok(label.to_ascii_lowercase()),
        })
        .collect()
}

/// Which owner form the underscore labels put the name in.
fn form_of(labels: &[String]) -> Result<OwnerForm, String> {
    let underscored: Vec<usize> = (0..labels.len())
        .filter(|&i| labels[i].starts_with('_'))
        .collect();
    match underscored.as_slice() {
        [] if labels.len() >= 2 => Ok(OwnerForm::Plain),
        [0] if labels.len() >= 2 => Ok(OwnerForm::Service),
        [1] if labels[1] == "_device" && labels.len() >= 3 => Ok(OwnerForm::Device),
        [] | [0] => Err("a single label is not a device name".into()),
        _ => Err(
            "not one of _<service>.<domain>, <id>._device.<domain>, <domain> \
             (underscore labels only as the first label, or _device as the second)"
                .into(),
        ),
    }
}

/// Letters, digits and `-` not at either end; with `underscore_allowed`, a leading `_` first.
fn check_label(label: &str, underscore_allowed: bool) -> Result<(), String> {
    let body = match label.strip_prefix('_') {
        Some(rest) if underscore_allowed && !rest.is_empty() => rest,
        Some(_) if underscore_allowed => return Err("a label of only '_'".into()),
        Some(_) => return Err(format!("underscore label '{label}' out of place")),
        None => label,
    };
    if let Some(c) = body
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        let why = match c {
            c if !c.is_ascii() => "not ASCII: use the A-label (xn--) form".to_string(),
            c if c.is_whitespace() || c.is_control() => {
                format!("{:?} is not a host-name character", c)
            }
            c => format!("'{c}' is not a host-name character (letters, digits, '-')"),
        };
        return Err(format!("label '{label}': {why}"));
    }
    if body.starts_with('-') || body.ends_with('-') {
        return Err(format!("label '{label}' starts or ends with '-'"));
    }
    Ok(())
}

fn dns_name(labels: &[String]) -> Result<Name, String> {
    let mut name = Name::from_labels(labels.iter().map(|l| l.as_bytes()))
        .map_err(|e| format!("not a DNS name: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> Result<OwnerForm, NameError> {
        DeviceName::parse(text).map(|n| n.form())
    }

    #[test]
    fn the_three_forms_in_lower_case() {
        let n = DeviceName::parse("Sensor7._DEVICE.Example.Test.").unwrap();
        assert_eq!(n.form(), OwnerForm::Device);
        assert_eq!(n.to_string(), "sensor7._device.example.test");
        assert_eq!(n.dns_name().to_string(), "sensor7._device.example.test.");
        assert_eq!(
            form("_mqtt-client.device1.example.test"),
            Ok(OwnerForm::Service)
        );
        assert_eq!(form("device1.example.test"), Ok(OwnerForm::Plain));
        assert_eq!(
            form("xn--snsor-bsa._device.xn--bcher-kva.test"),
            Ok(OwnerForm::Device)
        );
    }

    #[test]
    fn anything_but_host_name_syntax_is_refused_naming_the_name() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.test", ["abcdefghi"; 25].join("."));
        let refused = [
            r"x._device.foo\.example.test",
            r"x._device.example\046test",
            "x y._device.example.test",
            "x._device.example.test\n",
            "x.._device.example.test",
            ".x._device.example.test",
            "x._device.example.test..",
            "x!._device.example.test",
            "-x._device.example.test",
            "x-._device.example.test",
            "s\u{e9}nsor._device.example.test",
            "a._b._device.example.test",
            "x._other.example.test",
            "_._device.example.test",
            "x._device._test",
            "test",
            "",
            ".",
            &format!("{long_label}.test"),
            &long_name,
        ];
        for text in refused {
            let e = DeviceName::parse(text).expect_err(text);
            let shown = e.to_string();
            assert!(shown.contains("is not a host name"), "{shown}");
            if !text.contains('\n') {
                assert!(shown.contains(&format!("'{text}'")), "{shown}");
            }
        }
        assert!(long_name.len() > MAX_NAME_LEN);
        assert!(DeviceName::parse(&format!("{}.test", "a".repeat(63))).is_ok());
        let e = DeviceName::parse("x\n._device.example.test").unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(e.to_string().contains(r"'x\n._device.example.test'"), "{e}");
    }

    #[test]
    fn allowed_domain_is_a_label_wise_suffix() {
        let domain = DomainName::parse("Example.Test.").unwrap();
        let within = |text: &str| DeviceName::parse(text).unwrap().is_within(&domain);
        assert!(within("x._device.example.test"));
        assert!(within("_mqtt-client.d.EXAMPLE.test"));
        assert!(within("example.test"));
        assert!(!within("x._device.notexample.test"));
        assert!(!within("x._device.example.test.evil"));
        assert!(!within("x._device.other.test"));
        assert!(DomainName::parse(r"foo\.example.test").is_err());
        assert!(DomainName::parse("").is_err());
        assert!(DomainName::parse("_device.example.test").is_ok());
    }

    #[test]
    fn server_host_names() {
        let host = HostName::parse("Broker.Example.Test.").unwrap();
        assert_eq!(host.to_string(), "broker.example.test");
        assert_eq!(host.fqdn(), "broker.example.test.");
        assert!(HostName::parse("localhost").is_ok());
        for text in [
            r"broker\.example.test",
            r"broker\046example.test",
            "_443._tcp.broker.example.test",
            "broker.example.test..",
            "broker example.test",
            "",
        ] {
            let e = HostName::parse(text).expect_err(text);
            assert!(e.to_string().contains("is not a host name"), "{e}");
        }
    }
}
