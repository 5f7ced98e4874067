//! A cellular modem's AT command interface (3GPP TS 27.007) as a transport: each APDU travels
//! as hex in one AT command over the modem's serial port.
//!
//! Two ways, chosen per connection:
//! - Modem-managed logical channels, when the modem offers them (`AT+CCHO=?` answers OK):
//!   `AT+CCHO` opens a channel with the applet selected, `AT+CGLA` carries each APDU on it,
//!   `AT+CCHC` closes it. Many modems refuse MANAGE CHANNEL through `AT+CSIM` but offer these.
//! - `AT+CSIM` otherwise (or when the modem refuses to open a channel for the applet): the
//!   session opens its channel itself with MANAGE CHANNEL and SELECT.
//!
//! The choice is reported by [`Transport::route`] (`iotsafe info`, the provider's debug log).
//! A session id the modem forgot (a modem reset drops them all) makes `AT+CGLA` fail: that is
//! reported as a card reset, so the session reconnects and opens a new channel, once. Any
//! other refusal of `AT+CGLA` is taken the same way (the error codes are the modem's own), the
//! session closed with `AT+CCHC` first so that a modem which still had it does not keep it.
//!
//! The session id `AT+CCHO` returns is taken as the channel number (as hosts of modem-managed
//! channels do: the modem passes `AT+CGLA` APDUs to the card as they are, so their class byte
//! must name the channel). A modem whose ids are not channel numbers (1 to 19) gets `AT+CSIM`.
//!
//! Exclusivity: the port is locked with `flock` for the duration of a link, so two processes
//! sharing the modem never interleave a signing session's APDUs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use super::{ChannelOpening, Link, Transport};
use crate::error::{Error, Result};
use iotsafe_hex as hex;

/// How long one AT command may take before the modem is declared unresponsive. A real card
/// signs in well under a second; a modem adds its serial round trip.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the port must stay silent after a time-out before the next command is sent.
const QUIET: Duration = Duration::from_millis(500);
/// Longest answer to one AT command: `+CSIM` of the largest response APDU (65538 bytes, in
/// hex) with room to spare. A modem (or anything else on the port) that talks on without a
/// final result is cut off here rather than filling memory until the time-out.
const MAX_ANSWER: usize = 256 * 1024;

/// Logical channel numbers a UICC can have (ETSI TS 102 221): what an `AT+CCHO` session id
/// must be to name one.
const CHANNELS: std::ops::RangeInclusive<u32> = 1..=19;

/// A modem's serial port, opened in raw mode.
pub struct ModemTransport {
    path: String,
    port: File,
    timeout: Duration,
    /// Whether the modem manages logical channels, once asked.
    channels: Channels,
    /// The open `AT+CCHO` session (its id is the channel number): APDUs go by `AT+CGLA`.
    session: Option<u8>,
    /// Why the last `AT+CCHO` opened no channel (the modem refused that AID).
    refusal: Option<String>,
}

/// What the modem said about `AT+CCHO`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Channels {
    /// Not asked yet (nothing needed a logical channel).
    Unknown,
    /// `AT+CCHO=?` answered OK.
    Offered,
    /// The modem has no (usable) `AT+CCHO`: why.
    Absent(String),
}

impl ModemTransport {
    /// Opens the modem's AT port (e.g. `/dev/ttyUSB2`) and turns command echo off. Anything
    /// but a terminal is refused untouched; a terminal that does not answer `ATE0` with `OK`
    /// (not a modem, or none that works) gets its line settings back.
    pub fn open(path: &str, timeout: Duration) -> Result<Self> {
        let port = open_port(path)?;
        let saved = line_settings(&port)
            .map_err(|_| Error::NoModem(format!("{path} is not a terminal (a modem's AT port)")))?;
        make_raw(&port, saved)
            .map_err(|e| Error::Transport(format!("cannot configure modem {path}: {e}")))?;
        let mut modem = ModemTransport {
            path: path.to_string(),
            port,
            timeout,
            channels: Channels::Unknown,
            session: None,
            refusal: None,
        };
        // Under the lock: another process's operation may be under way, and each command
        // starts by discarding what the port holds (its answer, without the lock).
        let echo_off = lock(&modem.port, true)
            .map_err(|e| Error::Transport(format!("cannot lock modem {path}: {e}")))
            .and_then(|_| modem.command("ATE0"));
        let _ = lock(&modem.port, false);
        if let Err(e) = echo_off {
            restore_line_settings(&modem.port, &saved);
            return Err(e);
        }
        Ok(modem)
    }

    /// Sends one AT command; returns its information lines (final result `OK`). A modem that
    /// stops answering has forgotten any session: it is not closed later.
    fn command(&mut self, command: &str) -> Result<Vec<String>> {
        let result = self.exchange(command);
        if result.as_ref().is_err_and(Error::is_connection_loss) {
            self.session = None;
        }
        result
    }

    fn exchange(&mut self, command: &str) -> Result<Vec<String>> {
        // What arrived since the last answer (unsolicited result codes, a late answer to a
        // command that timed out, the greeting after a modem reset) is not this answer.
        discard_input(&self.port);
        self.port
            .write_all(format!("{command}\r").as_bytes())
            .map_err(|e| self.gone(&format!("cannot write to the modem: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let mut answer = Answer::default();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(&self.port, left) {
                self.settle();
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

    /// After a command timed out: reads and drops what the port says until it has been quiet
    /// for [`QUIET`] (at most one more time-out). A modem that was only slow answers the
    /// abandoned command late; that answer must not be read as the next command's (a stale
    /// `+CGLA:` taken for a signature's). Whatever comes later still would be: the residual
    /// risk of a modem slower than its time-out plus the quiet time.
    fn settle(&mut self) {
        let deadline = Instant::now() + self.timeout;
        let mut chunk = [0u8; 1024];
        while Instant::now() < deadline && wait_readable(&self.port, QUIET) {
            if matches!(self.port.read(&mut chunk), Ok(0) | Err(_)) {
                break;
            }
        }
        discard_input(&self.port);
    }

    fn gone(&self, detail: &str) -> Error {
        Error::Unresponsive {
            reader: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    fn transmit_apdu(&mut self, apdu: &[u8]) -> Result<Vec<u8>> {
        let hex = hex::encode(apdu);
        match self.session {
            None => {
                let lines = self.command(&format!("AT+CSIM={},\"{hex}\"", hex.len()))?;
                parse_csim(&lines)
            }
            Some(session) => {
                let command = format!("AT+CGLA={session},{},\"{hex}\"", hex.len());
                match self.command(&command) {
                    Ok(lines) => parse_cgla(&lines),
                    // The modem no longer knows the session (it was reset, or the SIM was),
                    // or refused this command for a reason of its own (busy with the SIM):
                    // 27.007 leaves the error codes to the modem, so both are taken as the
                    // channel's loss, as after a card reset, and it is opened anew. The
                    // session is closed first: a modem that still had it would keep it open
                    // for nobody, and modems have few.
                    Err(Error::Transport(refusal)) => {
                        self.close_session();
                        Err(Error::Unresponsive {
                            reader: self.path.clone(),
                            detail: format!("{refusal}: logical channel {session} is gone"),
                        })
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// `AT+CCHO` with `aid`, when the modem offers it (asked once per connection).
    fn open_channel(&mut self, aid: &[u8]) -> Result<ChannelOpening> {
        if self.channels == Channels::Unknown {
            self.channels = match self.command("AT+CCHO=?") {
                Ok(_) => Channels::Offered,
                Err(Error::Transport(refusal)) => Channels::Absent(refusal),
                Err(e) => return Err(e),
            };
        }
        if self.channels != Channels::Offered {
            return Ok(ChannelOpening::NotOffered);
        }
        let lines = match self.command(&format!("AT+CCHO=\"{}\"", hex::encode(aid))) {
            Ok(lines) => lines,
            Err(Error::Transport(refusal)) => {
                self.refusal = Some(refusal.clone());
                return Ok(ChannelOpening::Refused(refusal));
            }
            Err(e) => return Err(e),
        };
        let session = parse_ccho(&lines)?;
        match u8::try_from(session) {
            Ok(channel) if CHANNELS.contains(&session) => {
                self.session = Some(channel);
                self.refusal = None;
                Ok(ChannelOpening::Opened(channel))
            }
            _ => {
                let _ = self.command(&format!("AT+CCHC={session}"));
                let reason = format!(
                    "modem {} opened session {session}, not a logical channel number (1 to 19)",
                    self.path
                );
                self.channels = Channels::Absent(reason);
                Ok(ChannelOpening::NotOffered)
            }
        }
    }

    /// `AT+CCHC` of the open session (best effort: a modem that forgot it has closed it).
    fn close_session(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = self.command(&format!("AT+CCHC={session}"));
        }
    }
}

impl Drop for ModemTransport {
    fn drop(&mut self) {
        // A session the applet did not close (the process exits while it is open) is given
        // back too: modems have few.
        if self.session.is_some() && lock(&self.port, true).is_ok() {
            self.close_session();
            let _ = lock(&self.port, false);
        }
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
    parse_apdu_answer("AT+CSIM", "+CSIM:", lines)
}

/// `+CGLA: <length>,"<hex>"` → the response APDU.
#[doc(hidden)]
pub fn parse_cgla(lines: &[String]) -> Result<Vec<u8>> {
    parse_apdu_answer("AT+CGLA", "+CGLA:", lines)
}

/// `+CCHO: <sessionid>`, or the bare `<sessionid>` line of 27.007 → the session id.
#[doc(hidden)]
pub fn parse_ccho(lines: &[String]) -> Result<u32> {
    let what = "AT+CCHO";
    let prefixed = lines.iter().find_map(|l| l.strip_prefix("+CCHO:"));
    let bare = || {
        let mut numbers = lines
            .iter()
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
        match (numbers.next(), numbers.next()) {
            (Some(number), None) => Ok(number.as_str()),
            (None, _) => Err(Error::malformed(
                what,
                "no session id in the modem's answer",
            )),
            (Some(_), Some(_)) => Err(Error::malformed(what, "more than one session id")),
        }
    };
    let id = match prefixed {
        Some(id) => id.trim(),
        None => bare()?,
    };
    id.parse()
        .map_err(|_| Error::malformed(what, format!("session id '{id}'")))
}

/// `<prefix> <length>,"<hex>"` → the response APDU; the length counts hex digits and must
/// match them (the line itself is bounded by the answer's bound).
fn parse_apdu_answer(what: &str, prefix: &str, lines: &[String]) -> Result<Vec<u8>> {
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .ok_or_else(|| Error::malformed(what, format!("no {prefix} line in the modem's answer")))?;
    let (length, data) = line
        .split_once(',')
        .ok_or_else(|| Error::malformed(what, format!("'{prefix}{line}' has no data")))?;
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

    fn route(&self) -> Option<String> {
        Some(match (&self.session, &self.channels, &self.refusal) {
            (Some(channel), _, _) => {
                format!("AT+CCHO/AT+CGLA (logical channel {channel} opened by the modem)")
            }
            (None, Channels::Absent(why), _) => {
                format!("AT+CSIM (no logical channels from the modem: {why})")
            }
            (None, Channels::Offered, Some(why)) => {
                format!("AT+CSIM (the modem opened no logical channel for the applet: {why})")
            }
            (None, _, _) => "AT+CSIM".to_string(),
        })
    }

    fn recover(&mut self) -> Result<()> {
        // The old session went with the reset: never closed, so the port is not asked.
        self.session = None;
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

    fn open_channel(&mut self, aid: &[u8]) -> Result<ChannelOpening> {
        self.modem.open_channel(aid)
    }

    fn close_channel(&mut self, channel: u8) {
        if self.modem.session == Some(channel) {
            self.modem.close_session();
        }
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
        .map_err(|e| Error::NoModem(format!("cannot open modem {path}: {e}")))
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

/// Drops what the port received and nobody read yet.
fn discard_input(port: &File) {
    // SAFETY: tcflush on a descriptor owned by `port`.
    unsafe { libc::tcflush(port.as_raw_fd(), libc::TCIFLUSH) };
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

    #[test]
    fn cgla_answer_is_parsed_among_unsolicited_lines() {
        let answer = lines(
            "AT+CGLA=1,10,\"01CB000000\"\r\r\n+CREG: 1\r\n\r\n+CGLA: 6,\"019000\"\r\n\r\nOK\r\n",
        );
        assert_eq!(parse_cgla(&answer).unwrap(), [0x01, 0x90, 0x00]);
    }

    #[test]
    fn malformed_cgla_lines_are_errors() {
        for (line, why) in [
            ("+CGLA: 8,\"019000\"", "announces 8 hex digits, carries 6"),
            ("+CGLA: 7,\"0190000\"", "odd"),
            ("+CGLA: 6,\"01900G\"", "not hex"),
            ("+CGLA: -6,\"019000\"", "length '-6'"),
            ("+CGLA: 99999999999999999999999,\"9000\"", "length '9999"),
            ("+CGLA: 6", "has no data"),
            ("+CSIM: 4,\"9000\"", "no +CGLA: line"),
        ] {
            let e = parse_cgla(&[line.to_string()]).unwrap_err().to_string();
            assert!(e.contains("AT+CGLA"), "{line}: {e}");
            if why != "odd" && why != "not hex" {
                assert!(e.contains(why), "{line}: {e}");
            }
        }
    }

    #[test]
    fn ccho_answers_with_and_without_prefix() {
        assert_eq!(parse_ccho(&lines("\r\n+CCHO: 2\r\n\r\nOK\r\n")).unwrap(), 2);
        // 27.007 itself writes the bare session id.
        assert_eq!(
            parse_ccho(&lines("\r\n+CREG: 1\r\n3\r\nOK\r\n")).unwrap(),
            3
        );
        for (text, why) in [
            ("+CCHO: x", "session id 'x'"),
            ("+CCHO: 4294967296", "session id '4294967296'"),
            ("+CREG: 1", "no session id"),
            ("1\r\n2", "more than one session id"),
        ] {
            let answer = lines(&format!("{text}\r\nOK\r\n"));
            let e = parse_ccho(&answer).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("AT+CCHO"), "{text}: {e}");
        }
    }

    /// The commands a scripted modem read, and both ends of its terminal: kept until the
    /// test has read the last answer (a closed end hangs the terminal up, answer unread).
    type Played = (Vec<String>, File, File);

    /// A scripted modem on the other end of a pseudo-terminal: each command it reads is
    /// answered with the next text of `answers`; the commands are returned when all are.
    fn scripted_modem(answers: Vec<String>) -> (String, std::thread::JoinHandle<Played>) {
        let (mut master, slave) = pty();
        // Held open so that the master reads no hang-up before the transport opens the port.
        let held = open_port(&slave).unwrap();
        let modem = std::thread::spawn(move || {
            let mut commands = Vec::new();
            let mut pending = String::new();
            for answer in answers {
                while !pending.contains('\r') {
                    let mut buf = [0u8; 512];
                    let n = master.read(&mut buf).unwrap();
                    pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                let (command, rest) = pending.split_once('\r').unwrap();
                commands.push(command.to_string());
                pending = rest.to_string();
                master.write_all(answer.as_bytes()).unwrap();
            }
            (commands, master, held)
        });
        (slave, modem)
    }

    const OK: &str = "\r\nOK\r\n";

    #[test]
    fn a_session_id_that_is_no_channel_number_is_closed_and_at_csim_used() {
        let (port, modem) = scripted_modem(vec![
            OK.into(),
            OK.into(),
            "\r\n+CCHO: 300\r\nOK\r\n".into(),
            OK.into(),
        ]);
        let mut transport = ModemTransport::open(&port, Duration::from_secs(5)).unwrap();
        let opening = transport
            .link()
            .unwrap()
            .open_channel(&[0xA0, 0, 0, 5, 0x59]);
        assert_eq!(opening.unwrap(), ChannelOpening::NotOffered);
        let route = transport.route().unwrap();
        assert!(
            route.starts_with("AT+CSIM (no logical channels from the modem: modem ")
                && route.contains("opened session 300, not a logical channel number"),
            "{route}"
        );
        assert_eq!(
            modem.join().unwrap().0,
            ["ATE0", "AT+CCHO=?", "AT+CCHO=\"A000000559\"", "AT+CCHC=300"]
        );
    }

    #[test]
    fn a_forgotten_session_is_a_connection_loss_and_is_not_closed_again() {
        let (port, modem) = scripted_modem(vec![
            OK.into(),
            OK.into(),
            "\r\n+CCHO: 1\r\n\r\nOK\r\n".into(),
            "\r\n+CME ERROR: 21\r\n".into(),
        ]);
        let mut transport = ModemTransport::open(&port, Duration::from_secs(5)).unwrap();
        {
            let mut link = transport.link().unwrap();
            assert_eq!(
                link.open_channel(&[0xA0, 0, 0, 5, 0x59]).unwrap(),
                ChannelOpening::Opened(1)
            );
            let e = link.transmit(&[0x01, 0xCB, 0, 0, 0]).unwrap_err();
            assert!(e.is_connection_loss(), "{e}");
            assert!(
                e.to_string()
                    .contains("+CME ERROR: 21 to AT+CGLA: logical channel 1 is gone"),
                "{e}"
            );
        }
        let (commands, _master, _held) = modem.join().unwrap();
        assert_eq!(commands[3], "AT+CGLA=1,10,\"01CB000000\"");
        // Dropped without an AT+CCHC (the scripted modem, done, would not answer one: the
        // drop would wait for the time-out).
        let started = Instant::now();
        drop(transport);
        assert!(started.elapsed() < Duration::from_secs(1));
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
