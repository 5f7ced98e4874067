//! A cellular modem's AT command interface (3GPP TS 27.007 `AT+CSIM`) as a transport: each
//! APDU travels as hex in one `AT+CSIM` command over the modem's serial port.
//!
//! Exclusivity: the port is locked with `flock` for the duration of a link, so two processes
//! sharing the modem never interleave a signing session's APDUs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use super::{Link, Transport};
use crate::error::{Error, Result};
use iotsafe_hex as hex;

/// How long one AT command may take before the modem is declared unresponsive. A real card
/// signs in well under a second; a modem adds its serial round trip.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest answer to one AT command: `+CSIM` of the largest response APDU (65538 bytes, in
/// hex) with room to spare. A modem (or anything else on the port) that talks on without a
/// final result is cut off here rather than filling memory until the time-out.
const MAX_ANSWER: usize = 256 * 1024;

/// A modem's serial port, opened in raw mode.
pub struct ModemTransport {
    path: String,
    port: File,
    timeout: Duration,
}

impl ModemTransport {
    /// Opens the modem's AT port (e.g. `/dev/ttyUSB2`) and turns command echo off. Anything
    /// but a terminal is refused untouched; a terminal that does not answer `ATE0` with `OK`
    /// (not a modem, or none that works) gets its line settings back.
    pub fn open(path: &str, timeout: Duration) -> Result<Self> {
        let port = open_port(path)?;
        let saved = line_settings(&port).map_err(|_| {
            Error::NoReader(format!("{path} is not a terminal (a modem's AT port)"))
        })?;
        make_raw(&port, saved)
            .map_err(|e| Error::Transport(format!("cannot configure modem {path}: {e}")))?;
        let mut modem = ModemTransport {
            path: path.to_string(),
            port,
            timeout,
        };
        if let Err(e) = modem.command("ATE0") {
            restore_line_settings(&modem.port, &saved);
            return Err(e);
        }
        Ok(modem)
    }

    /// Sends one AT command; returns its information lines (final result `OK`).
    fn command(&mut self, command: &str) -> Result<Vec<String>> {
        self.port
            .write_all(format!("{command}\r").as_bytes())
            .map_err(|e| self.gone(&format!("cannot write to the modem: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let mut answer = Answer::default();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(&self.port, left) {
                return Err(self.gone(&format!(
                    "no answer to {} within {:?}",
                    verb(command),
                    self.timeout
                )));
            }
            let mut chunk = [0u8; 1024];
            let outcome = match self.port.read(&mut chunk) {
                Ok(0) => return Err(self.gone("the modem hung up")),
                Ok(n) => answer.feed(&String::from_utf8_lossy(&chunk[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
                Err(e) => return Err(self.gone(&format!("cannot read from the modem: {e}"))),
            };
            if let Some(outcome) = outcome {
                return outcome.map_err(|result| {
                    Error::Transport(format!(
                        "modem {} answered {result} to {}",
                        self.path,
                        verb(command)
                    ))
                });
            }
            if answer.received > MAX_ANSWER {
                return Err(self.gone(&format!(
                    "more than {MAX_ANSWER} bytes without a final result to {}",
                    verb(command)
                )));
            }
        }
    }

    fn gone(&self, detail: &str) -> Error {
        Error::Unresponsive {
            reader: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    fn transmit_apdu(&mut self, apdu: &[u8]) -> Result<Vec<u8>> {
        let hex = hex::encode(apdu);
        let lines = self.command(&format!("AT+CSIM={},\"{hex}\"", hex.len()))?;
        parse_csim(&lines)
    }
}

/// "AT+CSIM" of "AT+CSIM=10,\"...\"": the command's name, for messages.
fn verb(command: &str) -> &str {
    command.split('=').next().unwrap_or(command)
}

/// An AT command's answer as it arrives. Each complete line is looked at once, so an answer
/// costs time linear in its length, however it is cut into reads.
#[derive(Default)]
#[doc(hidden)]
pub struct Answer {
    /// Text after the last complete line.
    partial: String,
    /// Information lines so far.
    lines: Vec<String>,
    /// Bytes received so far.
    received: usize,
}

impl Answer {
    /// Adds received text. Once a final result code has arrived: `Ok(lines)` for OK,
    /// `Err(result)` for ERROR / +CME ERROR / +CMS ERROR.
    pub fn feed(&mut self, text: &str) -> Option<std::result::Result<Vec<String>, String>> {
        self.received += text.len();
        let mut rest = text;
        while let Some(end) = rest.find(['\r', '\n']) {
            let mut line = std::mem::take(&mut self.partial);
            line.push_str(&rest[..end]);
            rest = &rest[end + 1..];
            if let Some(outcome) = self.line(line.trim()) {
                return Some(outcome);
            }
        }
        self.partial.push_str(rest);
        None
    }

    fn line(&mut self, line: &str) -> Option<std::result::Result<Vec<String>, String>> {
        match line {
            "" => None,
            "OK" => Some(Ok(std::mem::take(&mut self.lines))),
            "ERROR" => Some(Err(line.to_string())),
            l if l.starts_with("+CME ERROR") || l.starts_with("+CMS ERROR") => {
                Some(Err(l.to_string()))
            }
            // The echo of our own command, when the modem still echoes.
            l if l.starts_with("AT") => None,
            l => {
                self.lines.push(l.to_string());
                None
            }
        }
    }
}

/// `+CSIM: <length>,"<hex>"` → the response APDU.
#[doc(hidden)]
pub fn parse_csim(lines: &[String]) -> Result<Vec<u8>> {
    let what = "AT+CSIM";
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix("+CSIM:"))
        .ok_or_else(|| Error::malformed(what, "no +CSIM line in the modem's answer"))?;
    let (length, data) = line
        .split_once(',')
        .ok_or_else(|| Error::malformed(what, format!("'+CSIM:{line}' has no data")))?;
    let data = data.trim().trim_matches('"');
    let length: usize = length
        .trim()
        .parse()
        .map_err(|_| Error::malformed(what, format!("length '{}'", length.trim())))?;
    if length != data.len() {
        return Err(Error::malformed(
            what,
            format!("announces {length} hex digits, carries {}", data.len()),
        ));
    }
    hex::decode(data).map_err(|e| Error::malformed(what, e))
}

impl Transport for ModemTransport {
    fn name(&self) -> &str {
        &self.path
    }

    fn link(&mut self) -> Result<Box<dyn Link + '_>> {
        lock(&self.port, true)
            .map_err(|e| Error::Transport(format!("cannot lock modem {}: {e}", self.path)))?;
        Ok(Box::new(ModemLink { modem: self }))
    }

    fn recover(&mut self) -> Result<()> {
        *self = ModemTransport::open(&self.path, self.timeout)?;
        Ok(())
    }
}

struct ModemLink<'a> {
    modem: &'a mut ModemTransport,
}

impl Link for ModemLink<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        self.modem.transmit_apdu(command)
    }
}

impl Drop for ModemLink<'_> {
    fn drop(&mut self) {
        let _ = lock(&self.modem.port, false);
    }
}

fn open_port(path: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Error::NoReader(format!("cannot open modem {path}: {e}")))
}

/// The terminal's line settings; an error for anything that is not a terminal.
fn line_settings(port: &File) -> std::io::Result<libc::termios> {
    // SAFETY: `termios` is plain data that tcgetattr fills in completely on success; the
    // descriptor is owned by `port`.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(port.as_raw_fd(), &mut termios) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(termios)
    }
}

/// Puts back the line settings a terminal had before [`make_raw`] (best effort).
fn restore_line_settings(port: &File, saved: &libc::termios) {
    // SAFETY: a descriptor owned by `port` and settings tcgetattr filled in.
    unsafe { libc::tcsetattr(port.as_raw_fd(), libc::TCSANOW, saved) };
}

/// Raw 8-bit mode at 115200 baud, from the terminal's `current` settings: no echo, no line
/// editing, no CR/LF translation.
fn make_raw(port: &File, current: libc::termios) -> std::io::Result<()> {
    let mut termios = current;
    // SAFETY: plain data changed in place; a descriptor owned by `port`.
    unsafe {
        libc::cfmakeraw(&mut termios);
        libc::cfsetspeed(&mut termios, libc::B115200);
        if libc::tcsetattr(port.as_raw_fd(), libc::TCSANOW, &termios) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Takes (`exclusive`) or releases the advisory lock that serialises processes on one modem.
fn lock(port: &File, exclusive: bool) -> std::io::Result<()> {
    let operation = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_UN
    };
    // SAFETY: flock on a descriptor owned by `port`.
    if unsafe { libc::flock(port.as_raw_fd(), operation) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `port` has bytes to read, at most `timeout`.
fn wait_readable(port: &File, timeout: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: port.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    ready > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outcome of an answer received in one piece.
    fn final_result(text: &str) -> Option<std::result::Result<Vec<String>, String>> {
        Answer::default().feed(text)
    }

    #[test]
    fn an_answer_cut_anywhere_reads_the_same() {
        let text = "AT+CSIM=4,\"0070\"\r\n+CSIM: 4,\"9000\"\r\nOK\r\n";
        // Until the line end after OK has arrived, the answer is incomplete.
        for cut in 0..text.len() - 1 {
            let mut answer = Answer::default();
            assert!(answer.feed(&text[..cut]).is_none(), "cut at {cut}");
            let lines = answer.feed(&text[cut..]).unwrap().unwrap();
            assert_eq!(lines, ["+CSIM: 4,\"9000\""], "cut at {cut}");
        }
    }

    fn lines(text: &str) -> Vec<String> {
        final_result(text).unwrap().unwrap()
    }

    #[test]
    fn csim_answer_is_parsed() {
        let answer = lines("\r\n+CSIM: 6,\"019000\"\r\n\r\nOK\r\n");
        assert_eq!(parse_csim(&answer).unwrap(), [0x01, 0x90, 0x00]);
    }

    #[test]
    fn echo_is_skipped_and_incomplete_answers_wait() {
        assert!(final_result("AT+CSIM=4,\"0070\"\r\n+CSIM: 4,\"9000\"\r\n").is_none());
        let answer = lines("AT+CSIM=4,\"0070\"\r\n+CSIM: 4,\"9000\"\r\nOK\r\n");
        assert_eq!(answer, ["+CSIM: 4,\"9000\""]);
    }

    #[test]
    fn errors_are_final_results() {
        assert_eq!(
            final_result("\r\n+CME ERROR: 10\r\n").unwrap().unwrap_err(),
            "+CME ERROR: 10"
        );
        assert_eq!(final_result("\r\nERROR\r\n").unwrap().unwrap_err(), "ERROR");
    }

    #[test]
    fn malformed_csim_lines_are_errors() {
        assert!(
            parse_csim(&["+CSIM: 8,\"019000\"".into()]).is_err(),
            "length mismatch"
        );
        assert!(
            parse_csim(&["+CSIM: 6,\"01900G\"".into()]).is_err(),
            "not hex"
        );
        assert!(
            parse_csim(&["+CSIM: x,\"019000\"".into()]).is_err(),
            "bad length"
        );
        assert!(parse_csim(&["OK".into()]).is_err(), "no +CSIM line");
    }

    /// A pseudo-terminal: the master (the other end) and the path of the slave.
    fn pty() -> (File, String) {
        use std::os::fd::FromRawFd;
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills in two descriptors, which become owned Files here.
        unsafe {
            assert_eq!(
                libc::openpty(
                    &mut master,
                    &mut slave,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null()
                ),
                0
            );
            let path = std::fs::read_link(format!("/proc/self/fd/{slave}")).unwrap();
            libc::close(slave);
            (
                File::from_raw_fd(master),
                path.to_string_lossy().into_owned(),
            )
        }
    }

    fn settings_of(path: &str) -> libc::termios {
        line_settings(&open_port(path).unwrap()).unwrap()
    }

    fn same_settings(a: &libc::termios, b: &libc::termios) -> bool {
        (a.c_iflag, a.c_oflag, a.c_cflag, a.c_lflag, a.c_cc)
            == (b.c_iflag, b.c_oflag, b.c_cflag, b.c_lflag, b.c_cc)
    }

    #[test]
    fn a_port_that_talks_on_without_a_final_result_is_cut_off() {
        let (mut master, slave) = pty();
        // SAFETY: fcntl on the master's own descriptor: writes must not block once the
        // modem side has stopped reading.
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let chatter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let noise = [b'x'; 4096];
                let mut drained = [0u8; 4096];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // What the port sends (the command, echoes) is read, as a modem would.
                    let _ = master.read(&mut drained);
                    if master.write(&noise).is_err() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        };
        let started = Instant::now();
        let opened = ModemTransport::open(&slave, Duration::from_secs(30));
        let elapsed = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        chatter.join().unwrap();
        let e = match opened {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a port that never answers OK was taken for a modem"),
        };
        assert!(
            e.contains("more than 262144 bytes without a final result to ATE0"),
            "{e}"
        );
        assert!(
            elapsed < Duration::from_secs(10),
            "cut off by size, not time"
        );
    }

    #[test]
    fn a_terminal_that_is_not_a_modem_keeps_its_line_settings() {
        let (_master, slave) = pty();
        let before = settings_of(&slave);
        let e = match ModemTransport::open(&slave, Duration::from_millis(200)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a silent terminal was taken for a modem"),
        };
        assert!(e.contains("no answer to ATE0"), "{e}");
        assert!(
            same_settings(&settings_of(&slave), &before),
            "line settings changed"
        );
    }

    #[test]
    fn anything_but_a_terminal_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-modem");
        std::fs::write(&file, b"precious").unwrap();
        let e = match ModemTransport::open(file.to_str().unwrap(), Duration::from_millis(200)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a regular file was taken for a modem"),
        };
        assert!(e.contains("is not a terminal"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    }
}
