//! Registry figures for `make bench`, one `BENCH name value` line each, against a real knotd on
//! loopback that signs each update as it applies it:
//! - `registry_publish_to_secure_ms`: from the UPDATE sent to the new record answering secure
//!   through the validating resolver (a fresh look-up, no cache), median;
//!   `registry_publish_to_secure_vs_fresh_lookup` divides it by a fresh validated look-up of a
//!   record already there, measured in the same run (what the wait itself costs at least);
//! - `registry_updates_per_s`: signed updates per second, each its own request and TCP
//!   connection as `iotsafe registry publish` sends it, one after the other;
//!   `registry_updates_per_s_vs_knsupdate` divides it by knsupdate's rate for the same updates
//!   to the same server in the same run (one knsupdate process sending them all).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::dns::{TestDns, TSIG_KEY_NAME};
use hickory_resolver::proto::rr::RecordType;
use iotsafe_dane::dane::resolver::{Resolver, ResolverConfig};
use iotsafe_dane::dane::tlsa::Tlsa;
use iotsafe_registry::wait::{self, Expect};
use iotsafe_registry::{Registry, TsigKey};

const ZONE: &str = "iotregistry.test.";

fn main() {
    let dns = TestDns::start(&[("iotregistry.test.", "present._device 300 IN TLSA 3 1 1 00")]);
    let key: TsigKey = dns.tsig_inline().parse().unwrap();
    let registry = Registry::new(dns.addr(), ZONE, key, Duration::from_secs(5)).unwrap();
    let resolver = Resolver::new(ResolverConfig::new(
        dns.addr(),
        dns.trust_anchor().parse().unwrap(),
    ))
    .unwrap();
    // The chain of trust is fetched once, as a running tool's first look-up does.
    resolver
        .lookup_fresh("present._device.iotregistry.test", RecordType::TLSA)
        .unwrap();

    publish_to_secure(&registry, &resolver);
    updates_per_second(&registry, &dns);
}

fn random_record() -> Tlsa {
    let mut digest = [0u8; 32];
    openssl::rand::rand_bytes(&mut digest).unwrap();
    format!("3 1 1 {}", iotsafe_dane::hex::encode_lower(&digest))
        .parse()
        .unwrap()
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

fn publish_to_secure(registry: &Registry, resolver: &Resolver) {
    let (mut publish, mut lookup) = (Vec::new(), Vec::new());
    for i in 0..21 {
        let name = format!("p{i}._device.iotregistry.test");
        let record = random_record();
        let start = Instant::now();
        let device = iotsafe_registry::device_name(&name, false).unwrap();
        registry.publish(&device, &record, 300).unwrap();
        wait::until_seen(
            resolver,
            &name,
            &Expect::Present(record),
            Duration::from_secs(30),
        )
        .unwrap();
        publish.push(start.elapsed());

        let start = Instant::now();
        let answer = resolver
            .lookup_fresh("present._device.iotregistry.test", RecordType::TLSA)
            .unwrap();
        lookup.push(start.elapsed());
        assert_eq!(answer.records().len(), 1);
    }
    let (publish, lookup) = (median(publish), median(lookup));
    println!("BENCH registry_publish_to_secure_ms {publish:.3}");
    println!("BENCH registry_fresh_lookup_ms {lookup:.3}");
    println!(
        "BENCH registry_publish_to_secure_vs_fresh_lookup {:.2}",
        publish / lookup
    );
}

fn updates_per_second(registry: &Registry, dns: &TestDns) {
    let n = 200;
    let start = Instant::now();
    for i in 0..n {
        let name = format!("u{i}._device.iotregistry.test");
        let device = iotsafe_registry::device_name(&name, false).unwrap();
        registry.publish(&device, &random_record(), 300).unwrap();
    }
    let ours = f64::from(n) / start.elapsed().as_secs_f64();

    let mut script = format!(
        "server 127.0.0.1 {}\nkey hmac-sha256:{TSIG_KEY_NAME} {}\nzone {ZONE}\n",
        dns.addr().port(),
        dns.tsig_secret()
    );
    for i in 0..n {
        script.push_str(&format!(
            "update add k{i}._device.{ZONE} 300 TLSA {}\nsend\n",
            random_record()
        ));
    }
    let start = Instant::now();
    let out = common::dns::knsupdate(&script);
    let theirs = f64::from(n) / start.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(dns
        .dig(&format!("k{}._device.{ZONE}", n - 1), "TLSA")
        .contains("TLSA"));
    println!("BENCH registry_updates_per_s {ours:.1}");
    println!("BENCH registry_knsupdate_updates_per_s {theirs:.1}");
    println!(
        "BENCH registry_updates_per_s_vs_knsupdate {:.3}",
        ours / theirs
    );
}
