//! The card behind a cellular modem: a pseudo-terminal that answers the AT commands hosts use
//! to reach the SIM (`AT+CSIM`, 3GPP TS 27.007), so that modem transports can be tested without
//! a modem. The terminal's name is published as a symbolic link (`--modem PATH`).

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;

use crate::applet::Applet;
use crate::hex;
use crate::vpcd::{stopped, Card, Exit, Options};

/// Serves AT commands on a new pseudo-terminal linked at `link`, until stopped.
pub fn run(applet: &mut Applet, mut opts: Options, link: &Path) -> io::Result<Exit> {
    let (mut master, _slave) = open_pty(link)?;
    eprintln!("iotsafe-sim: modem AT port at {}", link.display());
    let mut card = Card {
        applet,
        apdus: 0,
        opts: &mut opts,
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
            match answer(&mut card, &command) {
                Some(reply) => master.write_all(reply.as_bytes())?,
                None => break,
            }
        }
        if card.opts.fail_after.is_some_and(|n| card.apdus >= n) {
            break Exit::Pulled;
        }
    };
    let _ = std::fs::remove_file(link);
    Ok(outcome)
}

/// The modem's reply to one command line; `None` when the card is pulled (`--fail-after`).
fn answer(card: &mut Card<'_>, command: &str) -> Option<String> {
    let upper = command.to_ascii_uppercase();
    let reply = if let Some(args) = upper.strip_prefix("AT+CSIM=") {
        match parse_csim(args) {
            Some(apdu) => {
                if card.pulled_now() {
                    return None;
                }
                let response = hex::encode(&card.apdu(&apdu));
                format!("\r\n+CSIM: {},\"{response}\"\r\n\r\nOK\r\n", response.len())
            }
            None => "\r\n+CME ERROR: 50\r\n".to_string(),
        }
    } else if upper == "AT" || upper.starts_with("ATE") || upper == "ATZ" || upper == "AT+CMEE=1" {
        "\r\nOK\r\n".to_string()
    } else {
        "\r\nERROR\r\n".to_string()
    };
    Some(reply)
}

/// `<length>,"<hex>"`, the length counting hex digits.
fn parse_csim(args: &str) -> Option<Vec<u8>> {
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
    use super::parse_csim;

    #[test]
    fn csim_arguments() {
        assert_eq!(
            parse_csim("10,\"0070000001\""),
            Some(vec![0x00, 0x70, 0x00, 0x00, 0x01])
        );
        assert_eq!(parse_csim("12,\"0070000001\""), None, "length mismatch");
        assert_eq!(parse_csim("4,\"0070\""), None, "too short for an APDU");
    }
}
