//! The escaped-host-name attacker: `broker\.example.test` is the one-label name
//! `broker.example` in `test.`, not broker.example.test. Whoever holds that name in the signed
//! zone `test.` publishes an address and a TLSA record for its own server there, with a
//! certificate for broker.example.test.
#![allow(dead_code)]

use super::{dns, pki, tls};

/// The escaped host name as a user or caller would write it.
pub const HOST: &str = r"broker\.example.test";

/// The attacker's TLS server and the zone that publishes it under the escaped name.
pub struct EscapedHostRig {
    pub server: tls::TlsServer,
    pub dns: dns::TestDns,
    _dir: tempfile::TempDir,
}

impl EscapedHostRig {
    pub fn start() -> EscapedHostRig {
        let dir = tempfile::tempdir().unwrap();
        let attacker = pki::leaf(dir.path(), "att", "broker", &["broker.example.test"], None);
        let server = tls::TlsServer::start(&attacker.cert_path, &attacker.key_path, None);
        let record = pki::dane_ee_record(&attacker.cert);
        let lines = [
            "broker\\.example 300 IN A 127.0.0.1".to_string(),
            format!(
                "_{}._tcp.broker\\.example 300 IN TLSA {record}",
                server.port
            ),
        ];
        let extra: Vec<(&str, &str)> = lines.iter().map(|l| ("test.", l.as_str())).collect();
        let dns = dns::TestDns::start(&extra);
        EscapedHostRig {
            server,
            dns,
            _dir: dir,
        }
    }
}
