//! An on-path attacker between the resolver and a [`super::dns::TestDns`]: a DNS proxy on
//! loopback (UDP and TCP, one port) that passes every query to knotd and rewrites the response
//! to chosen `(name, type)` questions into a forged shape. Its threads stop when it is dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_resolver::proto::dnssec::rdata::DNSSECRData;
use hickory_resolver::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_resolver::proto::rr::rdata::{NS, SOA};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

/// How a response is rewritten.
#[derive(Clone, Debug)]
pub enum Forgery {
    /// NOERROR, no answer, and in the authority section only the (unsigned) SOA of `zone`:
    /// an "insecure" denial borrowed from a provably insecure zone elsewhere.
    ForeignInsecureSoa(&'static str),
    /// NOERROR, no answer, nothing in the authority section.
    NoSoa,
    /// The real response without its NSEC/NSEC3 records and their signatures.
    StrippedNsec,
    /// NOERROR, no answer, and the whole signed authority section of the real response to
    /// another question (SOA, NSEC and signatures of another zone).
    ForeignNsec(&'static str, RecordType),
    /// Over UDP an empty truncated response (TC), so that the client asks again over TCP;
    /// over TCP an empty response with this code (SERVFAIL, REFUSED, ...).
    TruncatedThen(ResponseCode),
    /// NOERROR, no answer, and in the authority section only an unsigned SOA owned by the
    /// given name (which need not be a zone apex): a denial that looks like one from an
    /// unsigned zone at that name.
    UnsignedSoaAt(&'static str),
    /// NOERROR, no answer, and in the authority section the signed SOA and every NSEC3 record
    /// (with its signatures) of the given zone, as knotd serves them in its real denials: a
    /// denial made of genuine records of that zone.
    Nsec3ChainOf(&'static str),
    /// NOERROR with an unsigned NS record at the question's name in the answer section: a
    /// delegation that is not there.
    UnsignedNs,
    /// The real response, this long after the question (a slow resolver path).
    Late(Duration),
}

/// The rewrite of one question, its records fetched from knotd when it was set.
#[derive(Clone)]
enum Rewrite {
    Denial(Vec<Record>),
    StripNsec,
    TruncatedThen(ResponseCode),
    Answer(Vec<Record>),
    Late(Duration),
}

type Rules = Arc<Mutex<HashMap<(Name, RecordType), Rewrite>>>;

pub struct DnsProxy {
    port: u16,
    upstream: SocketAddr,
    rules: Rules,
    forged: Arc<AtomicUsize>,
    strip_signatures: Arc<AtomicBool>,
    tcp_requests: Recorded,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Every request received over TCP, as sent (the bytes an on-path observer could replay).
type Recorded = Arc<Mutex<Vec<Vec<u8>>>>;

impl DnsProxy {
    /// Starts the proxy in front of the DNS server at `upstream`.
    pub fn start(upstream: SocketAddr) -> DnsProxy {
        let port = super::free_port();
        let udp = UdpSocket::bind(("127.0.0.1", port)).expect("bind proxy UDP");
        let tcp = TcpListener::bind(("127.0.0.1", port)).expect("bind proxy TCP");
        let rules: Rules = Arc::default();
        let forged = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let strip_signatures = Arc::new(AtomicBool::new(false));
        let tcp_requests = Recorded::default();
        let on_path = OnPath {
            upstream,
            rules: rules.clone(),
            forged: forged.clone(),
            strip_signatures: strip_signatures.clone(),
            tcp_requests: tcp_requests.clone(),
        };
        let threads = vec![
            spawn_udp(udp, on_path.clone(), stop.clone()),
            spawn_tcp(tcp, on_path, stop.clone()),
        ];
        DnsProxy {
            port,
            upstream,
            rules,
            forged,
            strip_signatures,
            tcp_requests,
            stop,
            threads,
        }
    }

    /// The requests received over TCP so far, in order, byte for byte.
    pub fn tcp_requests(&self) -> Vec<Vec<u8>> {
        lock(&self.tcp_requests).clone()
    }

    /// The address to give the resolver.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// From now on, answers to `name`/`rtype` are rewritten as `forgery` says.
    pub fn forge(&self, name: &str, rtype: RecordType, forgery: Forgery) {
        let rewrite = match forgery {
            Forgery::ForeignInsecureSoa(zone) => {
                let real = ask(self.upstream, &name_of(zone), RecordType::SOA);
                let soa: Vec<Record> = real
                    .answers
                    .iter()
                    .filter(|r| r.record_type() == RecordType::SOA)
                    .cloned()
                    .collect();
                assert_eq!(soa.len(), 1, "{zone} has an SOA: {real}");
                Rewrite::Denial(soa)
            }
            Forgery::NoSoa => Rewrite::Denial(Vec::new()),
            Forgery::StrippedNsec => Rewrite::StripNsec,
            Forgery::TruncatedThen(code) => Rewrite::TruncatedThen(code),
            Forgery::UnsignedSoaAt(owner) => {
                let soa = SOA::new(
                    name_of("ns.test."),
                    name_of("hostmaster.test."),
                    1,
                    3600,
                    600,
                    86400,
                    300,
                );
                Rewrite::Denial(vec![Record::from_rdata(
                    name_of(owner),
                    300,
                    RData::SOA(soa),
                )])
            }
            Forgery::Nsec3ChainOf(zone) => Rewrite::Denial(nsec3_chain(self.upstream, zone)),
            Forgery::Late(delay) => Rewrite::Late(delay),
            Forgery::UnsignedNs => {
                let ns = RData::NS(NS(name_of("ns.test.")));
                Rewrite::Answer(vec![Record::from_rdata(name_of(name), 300, ns)])
            }
            Forgery::ForeignNsec(other, other_type) => {
                let real = ask(self.upstream, &name_of(other), other_type);
                assert!(
                    real.authorities
                        .iter()
                        .any(|r| r.record_type() == RecordType::NSEC),
                    "a signed denial of {other}: {real}"
                );
                Rewrite::Denial(real.authorities.clone())
            }
        };
        lock(&self.rules).insert((name_of(name), rtype), rewrite);
    }

    /// From now on every response loses its signatures, as from a resolver that does not
    /// pass DNSSEC records on.
    pub fn strip_all_signatures(&self) {
        self.strip_signatures.store(true, Ordering::SeqCst);
    }

    /// Responses rewritten so far (to check that the attack took place).
    pub fn forged(&self) -> usize {
        self.forged.load(Ordering::SeqCst)
    }
}

impl Drop for DnsProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake both loops from their blocking waits; they see the flag and return.
        if let Ok(sock) = UdpSocket::bind("127.0.0.1:0") {
            let _ = sock.send_to(&[0], self.addr());
        }
        let _ = TcpStream::connect(self.addr());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What every query handler needs.
#[derive(Clone)]
struct OnPath {
    upstream: SocketAddr,
    rules: Rules,
    forged: Arc<AtomicUsize>,
    /// Every response loses its RRSIG records (a resolver that does not pass DNSSEC on).
    strip_signatures: Arc<AtomicBool>,
    tcp_requests: Recorded,
}

impl OnPath {
    /// The (possibly rewritten) response to one query received over TCP or UDP, as bytes.
    fn rewrite(&self, query: &[u8], response: Vec<u8>, over_tcp: bool) -> Vec<u8> {
        let response = if self.strip_signatures.load(Ordering::SeqCst) {
            without_signatures(response)
        } else {
            response
        };
        let Some(question) = Message::from_vec(query)
            .ok()
            .and_then(|m| m.queries.first().cloned())
        else {
            return response;
        };
        let key = (question.name().to_lowercase(), question.query_type());
        let Some(rewrite) = lock(&self.rules).get(&key).cloned() else {
            return response;
        };
        if let Rewrite::Late(delay) = rewrite {
            std::thread::sleep(delay);
            self.forged.fetch_add(1, Ordering::SeqCst);
            return response;
        }
        let Ok(mut message) = Message::from_vec(&response) else {
            return response;
        };
        match rewrite {
            Rewrite::Denial(authorities) => {
                message.metadata.response_code = ResponseCode::NoError;
                message.answers.clear();
                message.additionals.clear();
                message.authorities = authorities;
            }
            Rewrite::Answer(answers) => {
                message.metadata.response_code = ResponseCode::NoError;
                message.answers = answers;
                message.authorities.clear();
                message.additionals.clear();
            }
            Rewrite::StripNsec => message.authorities.retain(|r| !is_nsec_or_its_signature(r)),
            Rewrite::Late(_) => {}
            Rewrite::TruncatedThen(code) => {
                message.answers.clear();
                message.authorities.clear();
                message.additionals.clear();
                if over_tcp {
                    // As a validating resolver fails: no data, no AD bit.
                    message.metadata.response_code = code;
                    message.metadata.authentic_data = false;
                } else {
                    message.metadata.truncation = true;
                }
            }
        }
        self.forged.fetch_add(1, Ordering::SeqCst);
        message.to_vec().expect("encode forged response")
    }
}

fn without_signatures(response: Vec<u8>) -> Vec<u8> {
    let Ok(mut message) = Message::from_vec(&response) else {
        return response;
    };
    let unsigned = |r: &Record| r.record_type() != RecordType::RRSIG;
    message.answers.retain(unsigned);
    message.authorities.retain(unsigned);
    message.additionals.retain(unsigned);
    message.to_vec().unwrap_or(response)
}

fn is_nsec_or_its_signature(record: &Record) -> bool {
    let nsec = |t: RecordType| matches!(t, RecordType::NSEC | RecordType::NSEC3);
    match &record.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => nsec(sig.input().type_covered),
        _ => nsec(record.record_type()),
    }
}

fn spawn_udp(sock: UdpSocket, on_path: OnPath, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65535];
        loop {
            let Ok((len, client)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let query = buf[..len].to_vec();
            let (sock, on_path) = (sock.try_clone().expect("clone socket"), on_path.clone());
            // One thread per query: the validator asks several questions at once.
            std::thread::spawn(move || {
                if let Some(response) = udp_exchange(on_path.upstream, &query) {
                    let _ = sock.send_to(&on_path.rewrite(&query, response, false), client);
                }
            });
        }
    })
}

fn spawn_tcp(listener: TcpListener, on_path: OnPath, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let on_path = on_path.clone();
            std::thread::spawn(move || serve_tcp(stream, &on_path));
        }
    })
}

/// Length-prefixed queries on one client connection, each passed on over its own upstream
/// connection, until the client closes.
fn serve_tcp(mut client: TcpStream, on_path: &OnPath) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    while let Some(query) = read_frame(&mut client) {
        lock(&on_path.tcp_requests).push(query.clone());
        let Some(response) = tcp_exchange(on_path.upstream, &query) else {
            return;
        };
        if write_frame(&mut client, &on_path.rewrite(&query, response, true)).is_err() {
            return;
        }
    }
}

fn udp_exchange(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    sock.send_to(query, upstream).ok()?;
    let mut buf = vec![0u8; 65535];
    let len = sock.recv(&mut buf).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// One request sent as is over its own TCP connection to `upstream`; its response.
pub fn tcp_exchange(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let mut server = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)).ok()?;
    server.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write_frame(&mut server, query).ok()?;
    read_frame(&mut server)
}

fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut frame = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut frame).ok()?;
    Some(frame)
}

fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(frame.len()).map_err(std::io::Error::other)?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(frame)
}

/// The signed SOA and every NSEC3 RRset (with signatures) of `zone`, gathered from knotd's
/// denials of names that do not exist there (each brings the NSEC3 records covering or
/// matching its closest encloser, next closer name and wildcard).
fn nsec3_chain(upstream: SocketAddr, zone: &str) -> Vec<Record> {
    let zone = name_of(zone);
    let nsec3_part = |r: &Record| match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
            matches!(
                sig.input().type_covered,
                RecordType::NSEC3 | RecordType::SOA
            )
        }
        _ => matches!(r.record_type(), RecordType::NSEC3 | RecordType::SOA),
    };
    let mut records: Vec<Record> = Vec::new();
    for probe in 0..16 {
        let name = Name::from_ascii(format!("probe{probe}"))
            .and_then(|n| n.append_domain(&zone))
            .expect("probe name");
        let denial = ask(upstream, &name, RecordType::A);
        for record in denial.authorities.into_iter().filter(nsec3_part) {
            if !records.contains(&record) {
                records.push(record);
            }
        }
    }
    let owners: std::collections::HashSet<&Name> = records
        .iter()
        .filter(|r| r.record_type() == RecordType::NSEC3)
        .map(|r| &r.name)
        .collect();
    assert!(
        owners.len() >= 2,
        "the NSEC3 chain of {zone} has records at the apex and at its delegation: {records:?}"
    );
    records
}

/// One query (DNSSEC OK) straight to the server, for the records a forgery is made of.
fn ask(upstream: SocketAddr, name: &Name, rtype: RecordType) -> Message {
    let mut query = Message::query();
    query.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.enable_dnssec();
    edns.set_max_payload(4096);
    query.edns = Some(edns);
    let bytes = query.to_vec().expect("encode query");
    let response = tcp_exchange(upstream, &bytes).expect("the DNS server answers");
    Message::from_vec(&response).expect("a DNS response")
}

fn name_of(name: &str) -> Name {
    let mut name: Name = name.parse().expect("a domain name");
    name.set_fqdn(true);
    name.to_lowercase()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
