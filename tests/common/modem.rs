//! A simulated SIM behind a modem's AT port: `iotsafe-sim --modem` on a pseudo-terminal.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

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

impl Drop for ModemRig {
    fn drop(&mut self) {
        self.stop_sim();
    }
}
