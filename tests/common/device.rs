//! A device whose key pair is on the simulated SIM, certified as a device builder does it: a
//! key reference, a CSR signed by the card key through the provider (`openssl req`, or
//! `iotsafe enroll` in one step), the certificate from the registry CA (`openssl x509 -req`);
//! then the unmodified mosquitto clients connecting with that key.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::card::CardRig;
use super::mqtt::Broker;
use super::pki::Issued;

pub struct CardDevice {
    pub rig: CardRig,
    pub keyref: PathBuf,
    pub csr_path: PathBuf,
    pub cert_path: PathBuf,
}

impl CardDevice {
    /// A device on a fresh simulated card, its existing key pair certified by `ca` for the
    /// device name `name`; files `id.*` in `dir`.
    pub fn provision(dir: &Path, ca: &Issued, id: &str, name: &str) -> CardDevice {
        let device = CardDevice::with_keyref(CardRig::start(&[]), dir, id, &[]);
        device.request(id, name);
        device.issue(ca, name);
        device
    }

    /// Writes the key reference (`iotsafe keyref`) of the card key that `key_options` (the
    /// tool's `--key-id`/`--key-label` options; none: the default key) name.
    pub fn with_keyref(rig: CardRig, dir: &Path, id: &str, key_options: &[&str]) -> CardDevice {
        let keyref = dir.join(format!("{id}.keyref.pem"));
        let mut args = key_options.to_vec();
        args.extend(["keyref", "--out", keyref.to_str().unwrap()]);
        super::ok(rig.iotsafe(&args));
        CardDevice {
            rig,
            keyref,
            csr_path: dir.join(format!("{id}.csr")),
            cert_path: dir.join(format!("{id}.crt")),
        }
    }

    /// A device enrolled with `iotsafe enroll --name NAME` (its `enroll_options` added, and the
    /// tool's card options in `key_options`: none for the default key): the CSR signed on the
    /// card through the provider and the key reference written, files `id.*` in `dir`. The
    /// tool's output.
    pub fn enroll(
        rig: CardRig,
        dir: &Path,
        id: &str,
        name: &str,
        key_options: &[&str],
        enroll_options: &[&str],
    ) -> (CardDevice, Output) {
        let device = CardDevice {
            rig,
            keyref: dir.join(format!("{id}.keyref.pem")),
            csr_path: dir.join(format!("{id}.csr")),
            cert_path: dir.join(format!("{id}.crt")),
        };
        let mut args = key_options.to_vec();
        args.extend(["enroll", "--name", name, "--csr-out"]);
        args.push(device.csr_path.to_str().expect("UTF-8 path"));
        args.push("--keyref-out");
        args.push(device.keyref.to_str().expect("UTF-8 path"));
        args.extend(enroll_options);
        let out = device.rig.iotsafe(&args);
        (device, out)
    }

    /// `openssl req -new -key KEYREF`: a CSR for `/CN=id` with `name` as SAN dNSName, signed
    /// on the card through the provider.
    pub fn request(&self, id: &str, name: &str) {
        super::ok(
            self.with_provider("openssl")
                .args(["req", "-new", "-key"])
                .arg(&self.keyref)
                .args(["-subj", &format!("/CN={id}"), "-addext"])
                .arg(format!("subjectAltName=DNS:{name}"))
                .arg("-out")
                .arg(&self.csr_path)
                .output()
                .expect("openssl"),
        );
    }

    /// The registry CA issues the certificate for the device name it checked, `name`, set by
    /// the CA (`-extfile`), never copied from the request: a `2 x x` record of the CA would
    /// otherwise admit a certificate for any name a device asked for.
    pub fn issue(&self, ca: &Issued, name: &str) {
        let extfile = self.csr_path.with_extension("ext");
        std::fs::write(&extfile, format!("subjectAltName=DNS:{name}\n")).expect("write extfile");
        super::ok(
            Command::new("openssl")
                .args(["x509", "-req", "-in"])
                .arg(&self.csr_path)
                .arg("-CA")
                .arg(&ca.cert_path)
                .arg("-CAkey")
                .arg(&ca.key_path)
                .arg("-extfile")
                .arg(&extfile)
                .args(["-days", "30", "-out"])
                .arg(&self.cert_path)
                .output()
                .expect("openssl"),
        );
    }

    pub fn cert(&self) -> openssl::x509::X509 {
        openssl::x509::X509::from_pem(&std::fs::read(&self.cert_path).unwrap()).unwrap()
    }

    /// `program` reaching the card through the provider (`OPENSSL_CONF`, the rig's pcscd).
    pub fn with_provider(&self, program: &str) -> Command {
        let mut c = self.rig.command(program);
        c.env("OPENSSL_CONF", super::example_openssl_conf())
            .env("OPENSSL_MODULES", super::built_library_dir());
        c
    }

    /// The unmodified `program` (`mosquitto_pub` or `mosquitto_sub`) connecting to `broker` as
    /// client `id`, its key on the card, trusting the broker's certificate `server_ca`.
    pub fn client(&self, program: &str, broker: &Broker, server_ca: &Path, id: &str) -> Command {
        let mut c = self.with_provider(program);
        c.args(["-h", "localhost", "-p", &broker.port.to_string(), "-i", id])
            .arg("--cafile")
            .arg(server_ca)
            .arg("--cert")
            .arg(&self.cert_path)
            .arg("--key")
            .arg(&self.keyref);
        c
    }

    /// The unmodified `mosquitto_pub`, its key on the card, publishing `message` to sensors/x.
    pub fn publish(&self, broker: &Broker, server_ca: &Path, id: &str, message: &str) -> Output {
        self.client("mosquitto_pub", broker, server_ca, id)
            .args(["-t", "sensors/x", "-m", message, "-q", "1"])
            .output()
            .expect("mosquitto_pub (package mosquitto-clients)")
    }
}
