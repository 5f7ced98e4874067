//! The virtual card side of the vpcd reader driver: a TCP client that
//! speaks vpcd's framing (2-byte big-endian length, then payload).

use crate::applet::Applet;
use crate::hex;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Set by SIGTERM/SIGINT; every blocking wait polls it.
pub static STOP: AtomicBool = AtomicBool::new(false);

const RETRY: Duration = Duration::from_millis(200);
const POLL: Duration = Duration::from_millis(100);

/// vpcd control messages (one-byte payloads).
const POWER_OFF: u8 = 0;
const POWER_ON: u8 = 1;
const RESET: u8 = 2;
const GET_ATR: u8 = 4;

pub struct Options {
    pub addr: String,
    pub atr: Vec<u8>,
    pub latency: Duration,
    pub trace: Option<File>,
    /// Drop the connection on receiving this APDU (1-based) and stop.
    pub fail_after: Option<u64>,
}

/// Why the card stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT.
    Signalled,
    /// `--fail-after` pulled the card.
    Pulled,
}

pub fn install_signal_handlers() {
    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

pub(crate) fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Connects, serves, reconnects after a drop, until stopped.
pub fn run(applet: &mut Applet, mut opts: Options) -> Exit {
    let mut card = Card {
        applet,
        apdus: 0,
        opts: &mut opts,
    };
    loop {
        let Some(stream) = connect(&card.opts.addr) else {
            return Exit::Signalled;
        };
        eprintln!("iotsafe-sim: connected to vpcd at {}", card.opts.addr);
        let end = card.serve(stream);
        card.applet.reset();
        match end {
            Ok(exit) => return exit,
            Err(e) => eprintln!("iotsafe-sim: vpcd connection lost ({e}), reconnecting"),
        }
    }
}

/// Retries every 200 ms so the simulator may start before pcscd.
fn connect(addr: &str) -> Option<TcpStream> {
    while !stopped() {
        let attempt = addr.to_socket_addrs().ok().and_then(|mut a| a.next());
        if let Some(stream) = attempt.and_then(|a| TcpStream::connect_timeout(&a, RETRY).ok()) {
            return Some(stream);
        }
        pause(RETRY);
    }
    None
}

/// Sleeps, but wakes early for a stop request.
fn pause(total: Duration) {
    let step = Duration::from_millis(20);
    let mut left = total;
    while !left.is_zero() && !stopped() {
        let d = left.min(step);
        sleep(d);
        left -= d;
    }
}

/// The card as any front end (vpcd, modem) drives it: latency, trace and the APDU count of
/// `--fail-after` applied in one place.
pub(crate) struct Card<'a> {
    pub(crate) applet: &'a mut Applet,
    pub(crate) apdus: u64,
    pub(crate) opts: &'a mut Options,
}

impl Card<'_> {
    /// Counts an APDU; true when `--fail-after` says the card is pulled now.
    pub(crate) fn pulled_now(&mut self) -> bool {
        self.apdus += 1;
        self.opts.fail_after == Some(self.apdus)
    }

    /// Serves one connection. `Ok` means stop for good, `Err` reconnect.
    fn serve(&mut self, mut stream: TcpStream) -> io::Result<Exit> {
        stream.set_read_timeout(Some(POLL))?;
        stream.set_nodelay(true)?;
        let mut frames = FrameReader::default();
        loop {
            let Some(msg) = frames.next(&mut stream)? else {
                return Ok(Exit::Signalled);
            };
            match msg.as_slice() {
                [] => {}
                [ctrl] => self.control(*ctrl, &mut stream)?,
                apdu => {
                    if self.pulled_now() {
                        let _ = stream.shutdown(Shutdown::Both);
                        return Ok(Exit::Pulled);
                    }
                    let resp = self.apdu(apdu);
                    write_frame(&mut stream, &resp)?;
                }
            }
        }
    }

    fn control(&mut self, ctrl: u8, stream: &mut TcpStream) -> io::Result<()> {
        match ctrl {
            POWER_OFF | RESET => self.applet.reset(),
            POWER_ON => {}
            GET_ATR => write_frame(stream, &self.opts.atr)?,
            other => eprintln!("iotsafe-sim: ignoring vpcd control byte {other}"),
        }
        Ok(())
    }

    /// The response to `apdu`, `--apdu-latency-ms` after it was taken: the applet's work and
    /// the trace line fall within that time, so that a slow card's time per command is the
    /// latency asked for, whatever the simulator itself spent.
    pub(crate) fn apdu(&mut self, apdu: &[u8]) -> Vec<u8> {
        let taken = Instant::now();
        let resp = self.applet.process(apdu);
        if let Some(trace) = self.opts.trace.as_mut() {
            let line = format!("{} {}\n", hex::encode(apdu), hex::encode(&resp));
            if let Err(e) = trace.write_all(line.as_bytes()).and_then(|_| trace.flush()) {
                eprintln!("iotsafe-sim: cannot write trace: {e}");
            }
        }
        play_latency(taken, self.opts.latency);
        resp
    }
}

/// Adds `--apdu-latency-ms` (from `started`): a sleep, then a short spin, so that the card's
/// time is what was asked for and not that plus the scheduler's wake-up delay.
fn play_latency(started: Instant, latency: Duration) {
    const SPIN: Duration = Duration::from_millis(2);
    let deadline = started + latency;
    if let Some(rest) = latency
        .checked_sub(SPIN)
        .and_then(|d| d.checked_sub(started.elapsed()))
    {
        sleep(rest);
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len()).map_err(|_| io::Error::other("frame too long"))?;
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}

/// Reassembles frames from reads that time out every 100 ms (to notice
/// signals) without losing partial data.
#[derive(Default)]
struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// The next frame; `None` once a stop was requested.
    fn next(&mut self, stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Ok(Some(frame));
            }
            if stopped() {
                return Ok(None);
            }
            let mut chunk = [0u8; 4096];
            quick_ack(stream);
            match stream.read(&mut chunk) {
                Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "closed by peer")),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    quick_ack(stream);
                }
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn take_frame(&mut self) -> Option<Vec<u8>> {
        let len = u16::from_be_bytes([*self.buf.first()?, *self.buf.get(1)?]) as usize;
        if self.buf.len() < 2 + len {
            return None;
        }
        let frame = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Some(frame)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// The ATR: a T=1 card by default, T=0 only with `--t0`. The historical
/// bytes spell "IoTSAFESIM".
pub fn default_atr(t0: bool) -> Vec<u8> {
    const HIST: &[u8] = b"IoTSAFESIM";
    if t0 {
        // T0 = 0x0A: no interface bytes (T=0 implied), 10 historical bytes.
        let mut atr = vec![0x3B, 0x0A];
        atr.extend_from_slice(HIST);
        return atr;
    }
    // T0 = 0x8A: TD1 follows, 10 historical bytes; TD1 = 0x01: T=1.
    let mut atr = vec![0x3B, 0x8A, 0x01];
    atr.extend_from_slice(HIST);
    // TCK makes the XOR of T0..TCK zero (required when T=1 is offered).
    let tck = atr[1..].iter().fold(0u8, |a, b| a ^ b);
    atr.push(tck);
    atr
}

/// The reader driver sends a frame's length and payload in two writes: acknowledge at once,
/// or its Nagle waits for our delayed ACK (~40 ms per APDU).
fn quick_ack(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on our own socket with a c_int option.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
