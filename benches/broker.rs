//! Broker figures for `make bench` (one `BENCH name value` line each): a real mosquitto with the
//! plugin (plugins/mosquitto) against the same broker without it, a real knotd serving every
//! device's record, and MQTT clients in this process (TLS + CONNECT/CONNACK, so that process
//! start-up does not hide the broker's cost):
//! - `broker_connect_ratio_plugin_vs_none`: connections per second with the plugin on a warm
//!   cache over the same without the plugin, blocks interleaved in the same run (goal >= 0.9);
//! - `broker_cold_500_devices_s`: 500 distinct devices connecting (8 at a time) to a broker
//!   with a cold cache;
//!   `broker_cold_connects_per_s_ratio_plugin_vs_none`: its rate over that of the broker
//!   without the plugin, for 250 devices new to it (same run);
//! - `broker_stall_ms_p99`: meanwhile, the 99th percentile of the delay a subscriber sees on
//!   messages published every 5 ms; `broker_stall_ms_p99_none` is the same during the
//!   plugin-less broker's run, `broker_stall_ms_p99_idle` without connections (baselines, same
//!   run).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::dns::TestDns;
use common::mqtt::Broker;
use common::pki::{self, Issued};
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};

const DEVICES: usize = 500;
const CONNECTORS: usize = 8;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = pki::ca(d, "ca", "Registry CA");
    let server = pki::leaf(d, "server", "localhost", &["localhost"], None);
    let devices: Vec<(String, Issued)> = (0..DEVICES + 2)
        .map(|i| {
            let id = format!("dev{i}");
            let name = format!("{id}._device.iotregistry.test");
            let cert = pki::leaf(d, &id, &id, &[&name], Some(&ca));
            (id, cert)
        })
        .collect();
    let records: Vec<String> = devices
        .iter()
        .map(|(id, c)| format!("{id}._device 300 IN TLSA {}", pki::dane_ee_record(&c.cert)))
        .collect();
    let dns = TestDns::start(
        &records
            .iter()
            .map(|r| ("iotregistry.test.", r.as_str()))
            .collect::<Vec<_>>(),
    );
    let with_plugin = || {
        let resolver = dns.addr().to_string();
        let anchor = dns.trust_anchor_file();
        Broker::start_with_plugin(
            common::free_port(),
            &server.cert_path,
            &server.key_path,
            &ca.cert_path,
            &common::built_mosquitto_plugin(),
            &[
                ("resolver", resolver.as_str()),
                ("trust_anchor", anchor.to_str().unwrap()),
                ("allowed_domains", "iotregistry.test"),
                // Its clients are numbered, not named after their devices.
                ("client_id", "any"),
                ("cafile", ca.cert_path.to_str().unwrap()),
            ],
            "",
        )
    };
    let without = Broker::start_with(
        common::free_port(),
        &server.cert_path,
        &server.key_path,
        Some(&ca.cert_path),
    );

    let (pubsub, cold) = devices.split_at(2);
    let warm = with_plugin();
    connect_ratio(&warm, &without, &pubsub[0].1);
    drop(warm);

    let broker = with_plugin();
    let half_a = &cold[..cold.len() / 2];
    // The baseline: the broker without the plugin, other devices (new to it too).
    let none = cold_connects(&without, &pubsub[0].1, &pubsub[1].1, half_a);
    let plugin = cold_connects(&broker, &pubsub[0].1, &pubsub[1].1, cold);
    println!(
        "BENCH broker_cold_{}_devices_s {:.3}",
        cold.len(),
        plugin.seconds
    );
    println!(
        "BENCH broker_cold_connects_per_s_ratio_plugin_vs_none {:.3}",
        (cold.len() as f64 / plugin.seconds) / (half_a.len() as f64 / none.seconds)
    );
    println!("BENCH broker_stall_ms_p99 {:.3}", plugin.stall_p99);
    println!("BENCH broker_stall_ms_p99_none {:.3}", none.stall_p99);
    println!("BENCH broker_stall_ms_p99_idle {:.3}", plugin.idle_p99);
}

/// Connections per second with the plugin (warm: the device was admitted once before) over
/// the same without it, alternating blocks.
fn connect_ratio(plugin: &Broker, none: &Broker, device: &Issued) {
    let tls = connector(device);
    assert!(connect(&tls, plugin.port, "warmup"), "{}", plugin.log());
    let (mut t_plugin, mut t_none) = (Duration::ZERO, Duration::ZERO);
    let per_block = 50;
    for _ in 0..8 {
        let start = Instant::now();
        for i in 0..per_block {
            assert!(connect(&tls, plugin.port, &format!("p{i}")));
        }
        t_plugin += start.elapsed();
        let start = Instant::now();
        for i in 0..per_block {
            assert!(connect(&tls, none.port, &format!("n{i}")));
        }
        t_none += start.elapsed();
    }
    println!(
        "BENCH broker_connect_ratio_plugin_vs_none {:.3}",
        t_none.as_secs_f64() / t_plugin.as_secs_f64()
    );
}

/// What a run of first connections showed.
struct ColdRun {
    seconds: f64,
    /// The subscriber's delays: during the run, and before it.
    stall_p99: f64,
    idle_p99: f64,
}

/// Devices new to `broker` connecting (8 at a time), while a subscriber measures how late
/// messages arrive.
fn cold_connects(
    broker: &Broker,
    publisher: &Issued,
    subscriber: &Issued,
    cold: &[(String, Issued)],
) -> ColdRun {
    let stop = Arc::new(AtomicBool::new(false));
    let delays = Arc::new(Mutex::new(Vec::<f64>::new()));
    let (sub, publ) = (connector(subscriber), connector(publisher));
    let mut sub_stream = session(&sub, broker.port, "stall-sub").expect("subscriber admitted");
    subscribe(&mut sub_stream, "stall");
    let epoch = Instant::now();
    let reader = {
        let delays = delays.clone();
        thread::spawn(move || read_delays(sub_stream, epoch, &delays))
    };
    let writer = {
        let stop = stop.clone();
        let mut stream = session(&publ, broker.port, "stall-pub").expect("publisher admitted");
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let sent = epoch.elapsed().as_nanos() as u64;
                publish(&mut stream, "stall", &sent.to_be_bytes());
                thread::sleep(Duration::from_millis(5));
            }
            disconnect(&mut stream);
        })
    };
    thread::sleep(Duration::from_secs(1));
    let idle = percentile(&std::mem::take(&mut *delays.lock().unwrap()), 0.99);

    let start = Instant::now();
    thread::scope(|s| {
        for chunk in cold.chunks(cold.len().div_ceil(CONNECTORS)) {
            s.spawn(move || {
                for (id, device) in chunk {
                    assert!(connect(&connector(device), broker.port, id), "{id} refused");
                }
            });
        }
    });
    let cold_s = start.elapsed().as_secs_f64();
    let busy = percentile(&delays.lock().unwrap(), 0.99);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    drop(reader); // ends with the broker
    ColdRun {
        seconds: cold_s,
        stall_p99: busy,
        idle_p99: idle,
    }
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    assert!(!samples.is_empty(), "no message arrived");
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn read_delays(mut stream: SslStream<TcpStream>, epoch: Instant, delays: &Mutex<Vec<f64>>) {
    while let Some((kind, body)) = read_packet(&mut stream) {
        if kind >> 4 != 3 || body.len() < 2 {
            continue;
        }
        let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let Some(payload) = body.get(2 + topic_len..2 + topic_len + 8) else {
            continue;
        };
        let sent = u64::from_be_bytes(payload.try_into().unwrap());
        let now = epoch.elapsed().as_nanos() as u64;
        delays
            .lock()
            .unwrap()
            .push(now.saturating_sub(sent) as f64 / 1e6);
    }
}

fn connector(device: &Issued) -> SslConnector {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE); // the broker's authentication is not what is measured
    b.set_certificate_file(&device.cert_path, openssl::ssl::SslFiletype::PEM)
        .unwrap();
    b.set_private_key_file(&device.key_path, openssl::ssl::SslFiletype::PEM)
        .unwrap();
    b.build()
}

/// One MQTT session: TLS, CONNECT, CONNACK accepted; `None` when refused.
fn session(tls: &SslConnector, port: u16, client_id: &str) -> Option<SslStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut stream = tls.connect("localhost", tcp).ok()?;
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    put_str(&mut body, client_id.as_bytes());
    write_packet(&mut stream, 0x10, &body);
    let (kind, ack) = read_packet(&mut stream)?;
    (kind == 0x20 && ack.get(1) == Some(&0)).then_some(stream)
}

/// Connects, and disconnects once admitted: whether the broker admitted the client.
fn connect(tls: &SslConnector, port: u16, client_id: &str) -> bool {
    match session(tls, port, client_id) {
        Some(mut stream) => {
            disconnect(&mut stream);
            true
        }
        None => false,
    }
}

fn subscribe(stream: &mut SslStream<TcpStream>, topic: &str) {
    let mut body = vec![0, 1];
    put_str(&mut body, topic.as_bytes());
    body.push(0);
    write_packet(stream, 0x82, &body);
    let (kind, ack) = read_packet(stream).expect("SUBACK");
    assert!(
        kind == 0x90 && ack.get(2) == Some(&0),
        "subscription refused"
    );
}

fn publish(stream: &mut SslStream<TcpStream>, topic: &str, payload: &[u8]) {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    body.extend_from_slice(payload);
    write_packet(stream, 0x30, &body);
}

fn disconnect(stream: &mut SslStream<TcpStream>) {
    write_packet(stream, 0xE0, &[]);
    let _ = stream.shutdown();
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn write_packet(stream: &mut impl Write, kind: u8, body: &[u8]) {
    let mut packet = vec![kind];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(body);
    stream.write_all(&packet).unwrap();
}

/// One packet: its first byte and body; `None` at the end of the stream.
fn read_packet(stream: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut kind = [0u8];
    stream.read_exact(&mut kind).ok()?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).ok()?;
        len |= usize::from(byte[0] & 0x7F) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 || shift > 21 {
            break;
        }
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).ok()?;
    Some((kind[0], body))
}
