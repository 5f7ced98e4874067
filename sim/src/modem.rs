//! The card behind a cellular modem: a pseudo-terminal that answers the AT commands hosts use
//! to reach the SIM (3GPP TS 27.007), so that modem transports can be tested without a modem.
//! The terminal's name is published as a symbolic link (`--modem PATH`).
//!
//! Both ways a host reaches an applet are answered: `AT+CSIM` (APDUs on any channel, the host
//! manages channels with MANAGE CHANNEL) and modem-managed logical channels (`AT+CCHO` opens a
//! channel and selects an AID on it, `AT+CGLA` carries APDUs on it as they are, `AT+CCHC`
//! closes it). The quirks of real modems that hosts trip over are options ([`Quirks`]).
//! Two commands play what another host or the modem itself may do between a host's commands:
//! `AT+CFUN=1,1` restarts the modem (its sessions are gone), and `AT+XBUSY`, a test hook, makes
//! the next `AT+CGLA` fail with `+CME ERROR: 14` (SIM busy) while its session stays open.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::time::Duration;

use crate::applet::Applet;
use crate::hex;
use crate::vpcd::{stopped, Card, Exit, Options};

/// How `AT+CCHO` is refused, for the hosts' fallback to `AT+CSIM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CchoRefusal {
    /// The modem has no such command: `ERROR` to `AT+CCHO=?` and `AT+CCHO=...`.
    Absent,
    /// The command exists (`AT+CCHO=?` is OK) but opening is not allowed: `+CME ERROR: 3`.
    NotAllowed,
}

/// Behaviours of real modems, each off by default.
#[derive(Debug, Default)]
pub struct Quirks {
    /// Echo stays on whatever `ATE0` says.
    pub echo_stuck: bool,
    /// Unsolicited `+CREG` lines between a command's echo and its answer, and after it.
    pub urcs: bool,
    /// Each answer comes this late, and in two pieces this far apart.
    pub slow: Duration,
    /// `AT+CCHO` refused.
    pub refuse_ccho: Option<CchoRefusal>,
    /// Every command line received is appended to this file (hosts count AT commands).
    pub log: Option<File>,
}

/// 27.007 `+CME ERROR` codes used here.
const CME_NOT_ALLOWED: u32 = 3;
const CME_NOT_FOUND: u32 = 22;
const CME_INVALID_INDEX: u32 = 21;
const CME_BAD_PARAMETERS: u32 = 50;
const CME_SIM_BUSY: u32 = 14;

/// The modem: its echo setting and the logical channels it opened (session id = channel).
struct Modem<'a> {
    card: Card<'a>,
    quirks: Quirks,
    echo: bool,
    sessions: BTreeMap<u8, Vec<u8>>,
    /// `AT+XBUSY` was received: the next `AT+CGLA` is refused, its session left open.
    busy_once: bool,
}

/// Serves AT commands on a new pseudo-terminal linked at `link`, until stopped.
pub fn run(
    applet: &mut Applet,
    mut opts: Options,
    quirks: Quirks,
    link: &Path,
) -> io::Result<Exit> {
    let (mut master, _slave) = open_pty(link)?;
    eprintln!("iotsafe-sim: modem AT port at {}", link.display());
    let mut modem = Modem {
        card: Card {
            applet,
            apdus: 0,
            opts: &mut opts,
        },
        quirks,
        // Modems start with echo on.
        echo: true,
        sessions: BTreeMap::new(),
        busy_once: false,
    };
    let mut line = Vec::new();
    let outcome = loop {
        if stopped() {
            break Exit::Signalled;
        }
        if !readable(&master, 100) {
            continue;
        }
        let mut chunk = [0u8; 1024];
        let n = match master.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = std::fs::remove_file(link);
                return Err(e);
            }
        };
        let mut pulled = false;
        for &byte in &chunk[..n] {
            if byte != b'\r' && byte != b'\n' {
                line.push(byte);
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let command = String::from_utf8_lossy(&line).trim().to_string();
            line.clear();
            if !modem.serve(&mut master, &command)? {
                pulled = true;
                break;
            }
        }
        if pulled
            || modem
                .card
                .opts
                .fail_after
                .is_some_and(|n| modem.card.apdus >= n)
        {
            break Exit::Pulled;
        }
    };
    let _ = std::fs::remove_file(link);
    Ok(outcome)
}

impl Modem<'_> {
    /// Answers one command line (echo, URCs, pace as the quirks say); false when the card
    /// is pulled (`--fail-after`).
    fn serve(&mut self, port: &mut File, command: &str) -> io::Result<bool> {
        if let Some(log) = self.quirks.log.as_mut() {
            writeln!(log, "{command}")?;
            log.flush()?;
        }
        if self.echo || self.quirks.echo_stuck {
            port.write_all(format!("{command}\r").as_bytes())?;
        }
        let Some(reply) = self.answer(command) else {
            return Ok(false);
        };
        let mut reply = reply;
        if self.quirks.urcs {
            reply = format!("\r\n+CREG: 1\r\n{reply}\r\n+CREG: 5\r\n");
        }
        if self.quirks.slow.is_zero() {
            port.write_all(reply.as_bytes())?;
        } else {
            let (first, second) = reply.split_at(reply.len() / 2);
            for piece in [first, second] {
                std::thread::sleep(self.quirks.slow);
                port.write_all(piece.as_bytes())?;
            }
        }
        Ok(true)
    }

    /// The modem's reply to one command line; `None` when the card is pulled.
    fn answer(&mut self, command: &str) -> Option<String> {
        let upper = command.to_ascii_uppercase();
        let refused = self.quirks.refuse_ccho;
        let reply = if let Some(args) = upper.strip_prefix("AT+CSIM=") {
            match parse_apdu_args(args) {
                Some(apdu) => {
                    if self.card.pulled_now() {
                        return None;
                    }
                    apdu_reply("+CSIM", &self.card.apdu(&apdu))
                }
                None => cme(CME_BAD_PARAMETERS),
            }
        } else if upper.starts_with("AT+CCHO") && refused == Some(CchoRefusal::Absent) {
            "\r\nERROR\r\n".to_string()
        } else if ["AT+CCHO=?", "AT+CGLA=?", "AT+CCHC=?"].contains(&upper.as_str()) {
            ok()
        } else if let Some(args) = upper.strip_prefix("AT+CCHO=") {
            if refused == Some(CchoRefusal::NotAllowed) {
                cme(CME_NOT_ALLOWED)
            } else {
                self.open_channel(args)
            }
        } else if let Some(args) = upper.strip_prefix("AT+CGLA=") {
            return self.channel_apdu(args);
        } else if let Some(args) = upper.strip_prefix("AT+CCHC=") {
            self.close_channel(args)
        } else if upper == "AT+CFUN=1,1" {
            self.reset()
        } else if upper == "AT+XBUSY" {
            // A test hook in the vendor range: the next AT+CGLA fails as a modem busy with
            // the SIM answers, while its session stays open.
            self.busy_once = true;
            ok()
        } else if let Some(setting) = upper.strip_prefix("ATE") {
            // `ATE` is `ATE0` (V.250).
            self.echo = !matches!(setting, "" | "0");
            ok()
        } else if upper == "AT" || upper == "ATZ" || upper == "AT+CMEE=1" {
            ok()
        } else {
            "\r\nERROR\r\n".to_string()
        };
        Some(reply)
    }

    /// `AT+CCHO="<aid>"`: MANAGE CHANNEL, then SELECT on the new channel, as a modem does.
    fn open_channel(&mut self, args: &str) -> String {
        let Some(aid) = hex::decode(args.trim().trim_matches('"'))
            .ok()
            .filter(|aid| (5..=16).contains(&aid.len()))
        else {
            return cme(CME_BAD_PARAMETERS);
        };
        let opened = self.card.apdu(&[0x00, 0x70, 0x00, 0x00, 0x01]);
        let channel = match opened.as_slice() {
            [channel, 0x90, 0x00] => *channel,
            _ => return cme(CME_NOT_ALLOWED),
        };
        let mut select = vec![class_byte(channel), 0xA4, 0x04, 0x00, aid.len() as u8];
        select.extend(&aid);
        if !self.card.apdu(&select).ends_with(&[0x90, 0x00]) {
            self.card.apdu(&[0x00, 0x70, 0x80, channel]);
            return cme(CME_NOT_FOUND);
        }
        self.sessions.insert(channel, aid);
        format!("\r\n+CCHO: {channel}\r\n\r\nOK\r\n")
    }

    /// `AT+CGLA=<session>,<length>,"<hex>"`: the APDU goes to the card as it is.
    fn channel_apdu(&mut self, args: &str) -> Option<String> {
        let Some((session, apdu)) = args.split_once(',') else {
            return Some(cme(CME_BAD_PARAMETERS));
        };
        let known = session
            .trim()
            .parse::<u8>()
            .is_ok_and(|s| self.sessions.contains_key(&s));
        if !known {
            return Some(cme(CME_INVALID_INDEX));
        }
        if std::mem::take(&mut self.busy_once) {
            return Some(cme(CME_SIM_BUSY));
        }
        let Some(apdu) = parse_apdu_args(apdu) else {
            return Some(cme(CME_BAD_PARAMETERS));
        };
        if self.card.pulled_now() {
            return None;
        }
        Some(apdu_reply("+CGLA", &self.card.apdu(&apdu)))
    }

    /// `AT+CCHC=<session>`: MANAGE CHANNEL close.
    fn close_channel(&mut self, args: &str) -> String {
        match args.trim().parse::<u8>() {
            Ok(session) if self.sessions.remove(&session).is_some() => {
                self.card.apdu(&[0x00, 0x70, 0x80, session]);
                ok()
            }
            _ => cme(CME_INVALID_INDEX),
        }
    }

    /// `AT+CFUN=1,1`: the modem restarts. Its sessions and the card's channels are gone,
    /// echo is back on, and it greets the host unasked.
    fn reset(&mut self) -> String {
        self.card.applet.reset();
        self.sessions.clear();
        self.echo = true;
        eprintln!("iotsafe-sim: modem reset");
        format!("{}\r\nRDY\r\n\r\n+CPIN: READY\r\n", ok())
    }
}

fn ok() -> String {
    "\r\nOK\r\n".to_string()
}

fn cme(code: u32) -> String {
    format!("\r\n+CME ERROR: {code}\r\n")
}

/// `<name>: <length>,"<hex>"` and OK.
fn apdu_reply(name: &str, response: &[u8]) -> String {
    let response = hex::encode(response);
    format!(
        "\r\n{name}: {},\"{response}\"\r\n\r\nOK\r\n",
        response.len()
    )
}

/// Class byte of interindustry commands on `channel`.
fn class_byte(channel: u8) -> u8 {
    if channel < 4 {
        channel
    } else {
        0x40 | (channel - 4)
    }
}

/// `<length>,"<hex>"`, the length counting hex digits.
fn parse_apdu_args(args: &str) -> Option<Vec<u8>> {
    let (length, data) = args.split_once(',')?;
    let data = data.trim().trim_matches('"');
    if length.trim().parse::<usize>().ok()? != data.len() {
        return None;
    }
    let apdu = hex::decode(data).ok()?;
    (apdu.len() >= 4).then_some(apdu)
}

/// A new pseudo-terminal in raw mode: (master, slave). The slave stays open here so that the
/// master does not see a hang-up each time a host closes the port.
fn open_pty(link: &Path) -> io::Result<(File, File)> {
    // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r on a descriptor we own; ptsname_r writes
    // a NUL-terminated name into the buffer we pass with its length.
    let (master, name) = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let master = File::from_raw_fd(fd);
        if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0 as libc::c_char; 128];
        if libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len()) != 0 {
            return Err(io::Error::last_os_error());
        }
        (
            master,
            CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned(),
        )
    };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&name)?;
    make_raw(&slave)?;
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&name, link)?;
    Ok((master, slave))
}

fn make_raw(port: &File) -> io::Result<()> {
    // SAFETY: tcgetattr fills the plain-data termios before it is changed and written back.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(port.as_raw_fd(), &mut termios) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut termios);
        if libc::tcsetattr(port.as_raw_fd(), libc::TCSANOW, &termios) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn readable(file: &File, millis: i32) -> bool {
    let mut poll = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut poll, 1, millis) > 0 }
}

#[cfg(test)]
mod tests {
    use super::parse_apdu_args;

    #[test]
    fn csim_arguments() {
        assert_eq!(
            parse_apdu_args("10,\"0070000001\""),
            Some(vec![0x00, 0x70, 0x00, 0x00, 0x01])
        );
        assert_eq!(
            parse_apdu_args("12,\"0070000001\""),
            None,
            "length mismatch"
        );
        assert_eq!(parse_apdu_args("4,\"0070\""), None, "too short for an APDU");
    }
}
