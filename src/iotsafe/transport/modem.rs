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
use crate::hex;
use crate::iotsafe::error::{Error, Result};

/// How long one AT command may take before the modem is declared unresponsive. A real card
/// signs in well under a second; a modem adds its serial round trip.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A modem's serial port, opened in raw mode.
pub struct ModemTransport {
    path: String,
    port: File,
    timeout: Duration,
}

impl ModemTransport {
    /// Opens the modem's AT port (e.g. `/dev/ttyUSB2`) and turns command echo off.
    pub fn open(path: &str, timeout: Duration) -> Result<Self> {
        let port = open_raw(path)?;
        let mut modem = ModemTransport {
            path: path.to_string(),
            port,
            timeout,
        };
        modem.command("ATE0")?;
        Ok(modem)
    }

    /// Sends one AT command; returns its information lines (final result `OK`).
    fn command(&mut self, command: &str) -> Result<Vec<String>> {
        self.port
            .write_all(format!("{command}\r").as_bytes())
            .map_err(|e| self.gone(&format!("cannot write to the modem: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let mut text = String::new();
        loop {
            if let Some(outcome) = final_result(&text) {
                return outcome.map_err(|result| {
                    Error::Transport(format!(
                        "modem {} answered {result} to {}",
                        self.path,
                        verb(command)
                    ))
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(&self.port, left) {
                return Err(self.gone(&format!(
                    "no answer to {} within {:?}",
                    verb(command),
                    self.timeout
                )));
            }
            let mut chunk = [0u8; 1024];
            match self.port.read(&mut chunk) {
                Ok(0) => return Err(self.gone("the modem hung up")),
                Ok(n) => text.push_str(&String::from_utf8_lossy(&chunk[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.gone(&format!("cannot read from the modem: {e}"))),
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

/// The information lines when the text holds a final result code: `Ok(lines)` for OK,
/// `Err(result)` for ERROR / +CME ERROR; `None` while the answer is incomplete.
pub(crate) fn final_result(text: &str) -> Option<std::result::Result<Vec<String>, String>> {
    let complete = text.rfind(['\r', '\n']).map(|end| &text[..end])?;
    let mut lines = Vec::new();
    for line in complete
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        match line {
            "OK" => return Some(Ok(lines)),
            "ERROR" => return Some(Err(line.to_string())),
            l if l.starts_with("+CME ERROR") || l.starts_with("+CMS ERROR") => {
                return Some(Err(l.to_string()))
            }
            // The echo of our own command, when the modem still echoes.
            l if l.starts_with("AT") => {}
            l => lines.push(l.to_string()),
        }
    }
    None
}

/// `+CSIM: <length>,"<hex>"` → the response APDU.
pub(crate) fn parse_csim(lines: &[String]) -> Result<Vec<u8>> {
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

fn open_raw(path: &str) -> Result<File> {
    let port = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Error::NoReader(format!("cannot open modem {path}: {e}")))?;
    make_raw(&port).map_err(|e| Error::Transport(format!("cannot configure modem {path}: {e}")))?;
    Ok(port)
}

/// Raw 8-bit mode at 115200 baud: no echo, no line editing, no CR/LF translation.
fn make_raw(port: &File) -> std::io::Result<()> {
    let fd = port.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `port`; `termios` is plain data that
    // tcgetattr fills in completely before it is read.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut termios) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut termios);
        libc::cfsetspeed(&mut termios, libc::B115200);
        if libc::tcsetattr(fd, libc::TCSANOW, &termios) != 0 {
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
}
