//! `iotsafe enroll`: the device's side of enrolment in a registry. The key pair is (optionally)
//! generated on the card, a certificate request naming the device in its subjectAltName is
//! signed by the card key through the provider, and the TLSA record the registry publishes for
//! the key is printed. The registry's CA issues the certificate with `openssl x509 -req`.

use std::path::{Path, PathBuf};

use clap::Args;
use dane::name::{DeviceName, OwnerForm};
use iotsafe_provider::builtin::BuiltinProvider;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509Req, X509ReqBuilder};

use crate::card::{self, CardOptions};
use crate::dane_commands::write_atomically;

#[derive(Args)]
pub struct EnrollArgs {
    /// The device's name, put in the request's subjectAltName as a dNSName and used as the
    /// owner of its TLSA record. It must have the DANCE device form <id>._device.<domain>
    /// (e.g. sensor7._device.example.com), unless --plain-name.
    #[arg(long)]
    name: String,
    /// Accept a plain host name (e.g. sensor7.example.com) as the device's name instead of the
    /// <id>._device.<domain> form.
    #[arg(long)]
    plain_name: bool,
    /// Generate the key pair on the card first (an existing key is kept unless --force).
    #[arg(long)]
    genkey: bool,
    /// With --genkey: replace the key if the card already has one under this name (its
    /// certificate and TLSA records then no longer match).
    #[arg(long, requires = "genkey")]
    force: bool,
    /// Write the certificate request (PEM) here.
    #[arg(long, value_name = "FILE")]
    csr_out: PathBuf,
    /// Also write the key-reference file here: with the certificate, what OpenSSL programs
    /// load to use the card key (`--key FILE`).
    #[arg(long, value_name = "FILE")]
    keyref_out: Option<PathBuf>,
}

/// Writes the request (and the key reference), prints the TLSA record on stdout and the next
/// steps on stderr.
pub fn run(options: &CardOptions, args: &EnrollArgs) -> Result<(), String> {
    // Checked before the card is used: a wrong name is a usage mistake, not a card's.
    let name = device_name(&args.name, args.plain_name)?;
    check_directory("--csr-out", &args.csr_out)?;
    if let Some(out) = &args.keyref_out {
        check_directory("--keyref-out", out)?;
    }
    let public = card_key(options, args)?;
    write_request(options, args, &name, &public).map_err(|e| after_card_key(args, e))?;
    let record = card::dane_ee_record(&public)?;
    println!("{}", card::zone_line(&name.to_string(), &record));
    eprint!("{}", next_steps(&name, args, &record.to_string()));
    Ok(())
}

/// The request signed on the card, checked, written (and the key reference).
fn write_request(
    options: &CardOptions,
    args: &EnrollArgs,
    name: &DeviceName,
    public: &PKey<Public>,
) -> Result<(), String> {
    let keyref = card::key_reference(options)?;
    let modem = options.target()?.modem;
    let request = signed_request(name, public, &keyref, modem.as_deref())?;
    // A card whose signature does not verify with the key it reports would give a request
    // that fails only at the CA: named here, and nothing written.
    if !request.verify(public).unwrap_or(false) {
        return Err(
            "the request signed on the card does not verify with the card's public key; \
             nothing was written"
                .into(),
        );
    }
    let pem = request.to_pem().map_err(|e| e.to_string())?;
    write_file(&args.csr_out, &pem)?;
    if let Some(out) = &args.keyref_out {
        write_file(out, keyref.as_bytes())?;
    }
    Ok(())
}

/// An error after `--genkey` made the key pair: the key is on the card now, and running the
/// same command again would be refused (or, with `--force`, replace the key just made).
fn after_card_key(args: &EnrollArgs, error: String) -> String {
    if args.genkey {
        format!(
            "{error}; the key pair was generated on the card: re-run without --genkey (and \
             without --force) to write the request for it"
        )
    } else {
        error
    }
}

/// The device's name, parsed once; of the `_device` form unless `plain` allows a plain one.
fn device_name(text: &str, plain: bool) -> Result<DeviceName, String> {
    let name = DeviceName::parse(text).map_err(|e| format!("--name: {e}"))?;
    match name.form() {
        OwnerForm::Device => Ok(name),
        OwnerForm::Plain if plain => Ok(name),
        OwnerForm::Plain => Err(format!(
            "--name '{name}' is not of the DANCE device form <id>._device.<domain> \
             (add --plain-name to enrol under a plain host name)"
        )),
        OwnerForm::Service => Err(format!(
            "--name '{name}' is a _<service> owner name, not a device's name: use \
             <id>._device.<domain> (or a plain host name with --plain-name)"
        )),
    }
}

/// The selected key's public key, from the card, after generating the pair when asked.
fn card_key(options: &CardOptions, args: &EnrollArgs) -> Result<PKey<Public>, String> {
    let mut applet = options.open()?;
    if args.genkey {
        card::generate_key(options, &mut applet, args.force)
    } else {
        card::card_public_key(options, &mut applet)
    }
}

/// The request for `name` with the card's key, signed on the card through the provider. The
/// key the provider loads from the reference must be the one read from the card. The modem
/// the user named for the tool is the one configured for its provider (a key reference may
/// only name the configured modem), as `IOTSAFE_MODEM` would configure it.
fn signed_request(
    name: &DeviceName,
    public: &PKey<Public>,
    keyref: &str,
    modem: Option<&str>,
) -> Result<X509Req, String> {
    let settings: Vec<(&str, &str)> = modem.map(|m| ("IOTSAFE_MODEM", m)).into_iter().collect();
    let provider = BuiltinProvider::load(&settings)?;
    let key = provider.key(keyref)?;
    if !key.public_key()?.public_eq(public) {
        return Err("the provider loaded another key than the one read from the card".into());
    }
    key.sign_request(unsigned_request(name, public).map_err(|e| e.to_string())?)
}

/// Subject CN: the name's first label (the device id; a whole name may exceed the 64
/// characters a CN holds); subjectAltName: the name as a dNSName.
fn unsigned_request(
    name: &DeviceName,
    public: &PKey<Public>,
) -> Result<X509Req, openssl::error::ErrorStack> {
    let text = name.to_string();
    let id = text.split('.').next().unwrap_or_default();
    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_nid(Nid::COMMONNAME, id)?;
    let mut builder = X509ReqBuilder::new()?;
    builder.set_version(0)?;
    builder.set_subject_name(&subject.build())?;
    builder.set_pubkey(public)?;
    let san = SubjectAlternativeName::new()
        .dns(&text)
        .build(&builder.x509v3_context(None))?;
    let mut extensions = Stack::new()?;
    extensions.push(san)?;
    builder.add_extensions(&extensions)?;
    Ok(builder.build())
}

/// An output file's directory must exist and be writable before the card is used (a key
/// generated for a request that then cannot be written would be replaced for nothing).
fn check_directory(option: &str, path: &Path) -> Result<(), String> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        return Err(format!(
            "{option} {}: no directory {}",
            path.display(),
            directory.display()
        ));
    }
    // Writable: a file is made and removed (permission bits do not tell: root, ACLs,
    // read-only mounts).
    let probe = directory.join(format!(".iotsafe-enroll-probe.{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "{option} {}: cannot write in {}: {e}; nothing was done on the card",
            path.display(),
            directory.display()
        )),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_atomically(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// What was written, and what the registry and the device do next.
fn next_steps(name: &DeviceName, args: &EnrollArgs, record: &str) -> String {
    let csr = args.csr_out.display();
    let mut text =
        format!("certificate request for {name} written to {csr} (signed on the card)\n");
    let (keyref, write_keyref) = match &args.keyref_out {
        Some(path) => {
            text += &format!("key reference written to {}\n", path.display());
            (path.display().to_string(), String::new())
        }
        None => (
            "device.keyref.pem".to_string(),
            " (write it with iotsafe keyref --out device.keyref.pem, or enroll with --keyref-out)"
                .to_string(),
        ),
    };
    let publish_step = if args.force {
        // The replaced key is no longer on the card: its record admits only whoever else holds
        // that key, so it goes at once (a rollover's overlap would help no legitimate device).
        format!(
            "the key was replaced: the registry publishes the new key's record (TLSA {record}) \
             and removes the old key's record at once (iotsafe registry show {name} lists it):\n   \
             iotsafe registry publish {name} --cert device.crt, then\n   \
             iotsafe registry revoke {name} --record \"<the old key's record>\" \
             (with their --server, --zone, --tsig-key)"
        )
    } else {
        format!(
            "the registry publishes the record above (TLSA {record}) in its DNSSEC-signed zone:\n   \
             iotsafe registry publish {name} --cert device.crt (with its --server, --zone, --tsig-key)"
        )
    };
    text += &format!(
        "next steps:\n\
         1. the registry checks the request (openssl req -verify -noout -text -in {csr}) and its CA\n   \
            issues the certificate with the name it checked (set by the CA, not copied from the request):\n   \
            printf 'subjectAltName=DNS:{name}\\n' > device.ext\n   \
            openssl x509 -req -in {csr} -CA ca.crt -CAkey ca.key -extfile device.ext -days 365 -out device.crt\n\
         2. {publish_step}\n\
         3. the device's OpenSSL programs (the iotsafe provider in openssl.cnf) use the card key with\n   \
            --cert device.crt --key {keyref}{write_keyref}\n"
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};

    #[test]
    fn only_the_device_form_unless_plain_names_are_allowed() {
        let name = device_name("Sensor7._device.Example.COM.", false).unwrap();
        assert_eq!(name.to_string(), "sensor7._device.example.com");
        let e = device_name("sensor7.example.com", false).unwrap_err();
        assert!(
            e.contains("<id>._device.<domain>") && e.contains("--plain-name"),
            "{e}"
        );
        assert_eq!(
            device_name("sensor7.example.com", true).unwrap().form(),
            OwnerForm::Plain
        );
        let e = device_name("_mqtt-client.sensor7.example.com", true).unwrap_err();
        assert!(e.contains("_<service> owner name"), "{e}");
        let e = device_name("sensor7._device.exa\\.mple", false).unwrap_err();
        assert!(e.starts_with("--name: "), "{e}");
    }

    #[test]
    fn the_request_names_the_device_in_its_subject_alt_name() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let private = EcKey::generate(&group).unwrap();
        let public = EcKey::from_public_key(&group, private.public_key()).unwrap();
        let public = PKey::from_ec_key(public).unwrap();
        let long_id = "d".repeat(63);
        let text = format!("{long_id}._device.example.com");
        let name = device_name(&text, false).unwrap();
        let request = unsigned_request(&name, &public).unwrap();
        // One extension, the subjectAltName: a dNSName ([2] IA5String) of the whole name.
        let extensions = request.extensions().unwrap();
        assert_eq!(extensions.len(), 1);
        let der = extensions.get(0).unwrap().to_der().unwrap();
        let mut dns_name = vec![0x82, text.len() as u8];
        dns_name.extend(text.as_bytes());
        assert!(der.ends_with(&dns_name), "{der:02x?}");
        let cn = request
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next();
        assert_eq!(cn.unwrap().data().as_slice(), long_id.as_bytes());
        assert!(request.public_key().unwrap().public_eq(&public));
    }
}
