//! A simulated eSIM behind a real pcscd: an isolated pcscd (its own mount namespace for the
//! pid file, reached through /proc/<pid>/root) with a vpcd reader on a free port, and
//! `iotsafe-sim` plugged into that reader.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use super::{free_port_pair, wait_until, workspace_binary};

/// libpcsclite reads the socket path from the environment once per process, so a process holds
/// one rig at a time (tests that use the library in-process need a process of their own: nextest
/// gives each test one).
static ONE_RIG_PER_PROCESS: Mutex<()> = Mutex::new(());

pub struct CardRig {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub socket: PathBuf,
    pcscd: Child,
    sim: Option<Child>,
    sim_args: Vec<String>,
    _turn: MutexGuard<'static, ()>,
}

impl CardRig {
    /// pcscd + a provisioned simulator with the given extra options.
    pub fn start(sim_args: &[&str]) -> CardRig {
        let turn = ONE_RIG_PER_PROCESS
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port_pair();
        let pcscd = start_pcscd(dir.path(), port);
        let socket = PathBuf::from(format!("/proc/{}/root/run/pcscd/pcscd.comm", pcscd.id()));
        wait_until(10, "pcscd's socket", || socket.exists());
        // The library under test (in this process) and every child reach this pcscd.
        std::env::set_var("PCSCLITE_CSOCK_NAME", &socket);
        let mut rig = CardRig {
            dir,
            port,
            socket,
            pcscd,
            sim: None,
            sim_args: sim_args.iter().map(|s| s.to_string()).collect(),
            _turn: turn,
        };
        rig.start_sim();
        rig
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("card-state.json")
    }

    pub fn trace_file(&self) -> PathBuf {
        self.dir.path().join("apdu.trace")
    }

    /// (Re)starts the simulator on the same state, and waits until PC/SC sees the card.
    pub fn start_sim(&mut self) {
        self.start_sim_with(&[]);
    }

    /// Like [`start_sim`], with options added for this run only.
    pub fn start_sim_with(&mut self, extra: &[&str]) {
        let mut command = Command::new(workspace_binary("iotsafe-sim"));
        command
            .arg("--vpcd")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--state")
            .arg(self.state_file())
            .arg("--provision")
            .arg("--trace")
            .arg(self.trace_file())
            .args(&self.sim_args)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file(self.dir.path(), "sim.log")));
        self.sim = Some(command.spawn().expect("start iotsafe-sim"));
        wait_until(15, "the simulated card in the reader", || {
            self.card_present()
        });
    }

    /// Kills the simulator: to PC/SC, the card is pulled out. Returns once pcscd has seen it go,
    /// so that a following start is seen as a new card.
    pub fn stop_sim(&mut self) {
        if let Some(mut sim) = self.sim.take() {
            let _ = sim.kill();
            let _ = sim.wait();
            wait_until(15, "pcscd to see the card removed", || !self.card_present());
        }
    }

    fn card_present(&self) -> bool {
        let out = self.iotsafe(&["readers"]);
        if !out.status.success() {
            return false;
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|line| line.ends_with("\tcard present"))
    }

    /// Runs the `iotsafe` tool against this card.
    pub fn iotsafe(&self, args: &[&str]) -> Output {
        self.command(workspace_binary("iotsafe"))
            .args(args)
            .output()
            .expect("run iotsafe")
    }

    /// A command whose PC/SC clients reach this rig's pcscd.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("PCSCLITE_CSOCK_NAME", &self.socket);
        command
    }

    /// How many COMPUTE SIGNATURE APDUs (INIT 2A, UPDATE 2B) the card received after the
    /// first `from` lines of its trace.
    pub fn signing_apdus_since(&self, from: usize) -> usize {
        self.trace()
            .iter()
            .skip(from)
            .filter(|l| matches!(l.get(2..4), Some("2A" | "2B")))
            .count()
    }

    /// The APDU trace lines so far (`<command hex> <response hex>`).
    pub fn trace(&self) -> Vec<String> {
        std::fs::read_to_string(self.trace_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for CardRig {
    fn drop(&mut self) {
        if let Some(mut sim) = self.sim.take() {
            let _ = sim.kill();
            let _ = sim.wait();
        }
        let _ = self.pcscd.kill();
        let _ = self.pcscd.wait();
    }
}

fn start_pcscd(dir: &Path, port: u16) -> Child {
    let conf = dir.join("reader.conf.d");
    std::fs::create_dir_all(&conf).expect("reader.conf.d");
    std::fs::write(
        conf.join("vpcd"),
        format!(
            "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{port:04X}\n\
             LIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 0x{port:04X}\n"
        ),
    )
    .expect("vpcd reader.conf");
    std::fs::create_dir_all("/run/pcscd").expect("/run/pcscd (tests run as root)");
    // `unshare -m` and `sh` exec into pcscd: the child's pid is pcscd's.
    Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs none /run/pcscd && exec pcscd -f -c \"$0\"",
        ])
        .arg(&conf)
        .stdout(Stdio::from(log_file(dir, "pcscd.log")))
        .stderr(Stdio::from(log_file(dir, "pcscd.err")))
        .spawn()
        .expect("start pcscd (needs root for unshare -m)")
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(name)).expect("log file")
}
