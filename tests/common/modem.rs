//! A simulated SIM behind a modem's AT port: `iotsafe-sim --modem` on a pseudo-terminal.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{wait_until, workspace_binary};

pub struct ModemRig {
    pub dir: tempfile::TempDir,
    sim: Option<Child>,
}

impl ModemRig {
    pub fn start(sim_args: &[&str]) -> ModemRig {
        let mut rig = ModemRig {
            dir: tempfile::tempdir().expect("temp dir"),
            sim: None,
        };
        rig.start_sim(sim_args);
        rig
    }

    /// The modem's AT port (a link to the pseudo-terminal).
    pub fn port(&self) -> PathBuf {
        self.dir.path().join("modem")
    }

    pub fn port_str(&self) -> String {
        self.port().to_string_lossy().into_owned()
    }

    pub fn trace(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("apdu.trace")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    /// Every AT command line the modem received, in order.
    pub fn at_commands(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("at.log")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    pub fn start_sim(&mut self, extra: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join("sim.log")).expect("sim log");
        let sim = Command::new(workspace_binary("iotsafe-sim"))
            .arg("--modem")
            .arg(self.port())
            .arg("--state")
            .arg(self.dir.path().join("card-state.json"))
            .arg("--provision")
            .arg("--trace")
            .arg(self.dir.path().join("apdu.trace"))
            .arg("--modem-log")
            .arg(self.dir.path().join("at.log"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start iotsafe-sim --modem");
        self.sim = Some(sim);
        wait_until(10, "the modem's AT port", || self.port().exists());
    }

    pub fn stop_sim(&mut self) {
        if let Some(mut sim) = self.sim.take() {
            let _ = sim.kill();
            let _ = sim.wait();
        }
    }

    /// Runs the `iotsafe` tool through this modem.
    pub fn iotsafe(&self, args: &[&str]) -> Output {
        Command::new(workspace_binary("iotsafe"))
            .arg("--modem")
            .arg(self.port())
            .args(args)
            .output()
            .expect("run iotsafe")
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(workspace_binary("iotsafe"));
        command.arg("--modem").arg(self.port());
        command
    }
}

/// The modem's two ways to the applet: its own logical channels, or AT+CSIM (a modem that has
/// no AT+CCHO). Each: the simulator's options, what `iotsafe info` says of it, and the AT
/// command that carries the applet's APDUs.
pub struct ModemMode {
    pub name: &'static str,
    pub sim_args: &'static [&'static str],
    pub route: &'static str,
    pub apdu_command: &'static str,
}

pub const CHANNELS: ModemMode = ModemMode {
    name: "AT+CGLA",
    sim_args: &[],
    route: "by AT+CCHO/AT+CGLA (logical channel 1 opened by the modem)",
    apdu_command: "AT+CGLA=1,",
};

pub const CSIM: ModemMode = ModemMode {
    name: "AT+CSIM",
    sim_args: &["--modem-refuse-ccho", "absent"],
    route: "by AT+CSIM (no logical channels from the modem: ",
    apdu_command: "AT+CSIM=",
};

pub const MODES: [ModemMode; 2] = [CHANNELS, CSIM];

impl ModemRig {
    /// AT commands since `from` (an index into [`ModemRig::at_commands`]) that carry APDUs
    /// in `mode`, and all AT commands since then.
    pub fn apdu_commands_since(&self, from: usize, mode: &ModemMode) -> (usize, usize) {
        let all = self.at_commands();
        let since = all.get(from..).unwrap_or_default();
        let apdus = since
            .iter()
            .filter(|c| c.starts_with(mode.apdu_command))
            .count();
        (apdus, since.len())
    }
}

impl ModemRig {
    /// Sends `AT+CFUN=1,1` on the modem's port as another host would (holding the port's
    /// lock) and waits for its OK: the modem forgets its logical channels.
    pub fn reset_modem(&self) {
        self.another_host_sends("AT+CFUN=1,1");
    }

    /// Another host on the modem's port sends `command` (holding the port's lock, as hosts do)
    /// and waits for its OK.
    pub fn another_host_sends(&self, command: &str) {
        let mut port = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.port())
            .unwrap();
        // SAFETY: flock on a descriptor owned by `port`.
        assert_eq!(unsafe { libc::flock(port.as_raw_fd(), libc::LOCK_EX) }, 0);
        port.write_all(format!("{command}\r").as_bytes()).unwrap();
        let mut answer = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answer.contains("\r\nOK\r\n") {
            assert!(Instant::now() < deadline, "no OK to {command}: {answer:?}");
            let mut buf = [0u8; 256];
            let n = port.read(&mut buf).unwrap();
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

impl Drop for ModemRig {
    fn drop(&mut self) {
        self.stop_sim();
    }
}
