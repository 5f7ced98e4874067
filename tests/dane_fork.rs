//! A resolver used before `fork()` keeps working in the child, as a daemonising server (mosquitto
//! with the plugin) needs: the child's first uncached look-up gets an answer instead of hanging
//! on the parent's runtime, whose thread the child does not have. Once in Rust, once from a C
//! program through the C API.

mod common;

use common::{dns, pki};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hickory_resolver::proto::rr::RecordType;
use iotsafe_dane::dane::resolver::{Proof, Resolver, ResolverConfig};

/// How long the child may take: a cold validated look-up on loopback takes milliseconds.
const CHILD_LIMIT: Duration = Duration::from_secs(10);

#[test]
fn uncached_lookup_in_a_forked_child_gets_an_answer() {
    let dns = dns::TestDns::start(&[
        ("iotregistry.test.", "before 300 IN A 127.0.0.1"),
        ("iotregistry.test.", "after 300 IN TXT \"hello\""),
    ]);
    let resolver = Resolver::new(ResolverConfig::new(
        dns.addr(),
        dns.trust_anchor().parse().unwrap(),
    ))
    .unwrap();
    // The parent's runtime is running and its connections are in use before the fork.
    let before = resolver
        .resolve("before.iotregistry.test", RecordType::A)
        .unwrap();
    assert_eq!(before.proof(), Proof::Secure);

    let verdict = in_forked_child(|| child_look_ups(&resolver));
    let verdict = verdict
        .unwrap_or_else(|| panic!("the child's look-up hung (no answer in {CHILD_LIMIT:?})"));
    assert_eq!(verdict, "cached=true fresh=ok");
    // The parent's resolver is unharmed by the child's.
    let after = resolver
        .resolve("after.iotregistry.test", RecordType::TXT)
        .unwrap();
    assert_eq!(after.proof(), Proof::Secure);
}

/// The child's part: a cached and a fresh look-up.
fn child_look_ups(resolver: &Resolver) -> String {
    let cached = resolver
        .resolve("before.iotregistry.test", RecordType::A)
        .is_ok_and(|r| r.proof() == Proof::Secure);
    let fresh = resolver.resolve("after.iotregistry.test", RecordType::TXT);
    let fresh = match fresh {
        Ok(r) if r.proof() == Proof::Secure && !r.records().is_empty() => "ok".into(),
        Ok(r) => format!("answer {}", r.last()),
        Err(e) => format!("error {e}"),
    };
    format!("cached={cached} fresh={fresh}")
}

/// Forks; the child runs `child` and sends back what it returns. `None` if the child takes
/// longer than [`CHILD_LIMIT`] (it is killed).
fn in_forked_child(child: impl FnOnce() -> String + std::panic::UnwindSafe) -> Option<String> {
    let (read_end, write_end) = pipe();
    // SAFETY: the child only runs `child` and leaves by _exit, so no destructor of the
    // parent's state (the knotd child process, temporary directories) runs twice.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let verdict = std::panic::catch_unwind(child).unwrap_or_else(|_| "panic".into());
        // SAFETY: a pipe end this process owns; then leave without running destructors.
        unsafe {
            libc::write(write_end, verdict.as_ptr().cast(), verdict.len());
            libc::_exit(0);
        }
    }
    // SAFETY: the parent's copy of the write end is not needed (EOF when the child exits).
    unsafe { libc::close(write_end) };
    let verdict = read_with_limit(read_end, CHILD_LIMIT);
    // SAFETY: the child is ours; kill is harmless if it has already exited, and the wait
    // reaps it either way.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        libc::close(read_end);
    }
    verdict
}

/// Another thread of the parent is inside one of the resolver's short critical sections (it
/// holds its locks) when the fork happens. Copied into the child locked, with no thread left
/// to release them, they would hang the child's first look-up for ever; the fork instead
/// waits for them, and the child's look-ups answer.
#[test]
fn a_fork_while_another_thread_holds_the_resolver_locks_leaves_them_free() {
    let dns = dns::TestDns::start(&[
        ("iotregistry.test.", "before 300 IN A 127.0.0.1"),
        ("iotregistry.test.", "after 300 IN TXT \"hello\""),
    ]);
    let resolver = std::sync::Arc::new(
        Resolver::new(ResolverConfig::new(
            dns.addr(),
            dns.trust_anchor().parse().unwrap(),
        ))
        .unwrap(),
    );
    let before = resolver
        .resolve("before.iotregistry.test", RecordType::A)
        .unwrap();
    assert_eq!(before.proof(), Proof::Secure);
    let (held, held_rx) = std::sync::mpsc::channel();
    let holder = {
        let resolver = resolver.clone();
        std::thread::spawn(move || {
            resolver.with_locks_held(|| {
                held.send(()).unwrap();
                // Long enough for the fork below to happen while the locks are held.
                std::thread::sleep(Duration::from_millis(300));
            })
        })
    };
    held_rx.recv().unwrap();
    let verdict = in_forked_child(|| child_look_ups(&resolver));
    holder.join().unwrap();
    let verdict = verdict
        .unwrap_or_else(|| panic!("the child's look-up hung (no answer in {CHILD_LIMIT:?})"));
    assert_eq!(verdict, "cached=true fresh=ok");
}

fn pipe() -> (libc::c_int, libc::c_int) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
    (fds[0], fds[1])
}

/// Everything the child writes until it closes the pipe, or `None` if that takes longer than
/// `limit`.
fn read_with_limit(fd: libc::c_int, limit: Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + limit;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as libc::c_int) };
        if ready <= 0 {
            return None;
        }
        let mut buf = [0u8; 512];
        // SAFETY: reads into a local buffer of the given size.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// A C server's shape: a handle made and used, then fork(); the child verifies a device whose
/// record nobody asked for yet. The child arms alarm() so that a hang ends in SIGALRM.
const FORKING_C_PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/pem.h>
#include <iotsafe_dane.h>

int main(int argc, char **argv) {
    if (argc != 6) return 2;
    const char *resolver = argv[1], *anchor = argv[2], *cert_file = argv[3];
    FILE *f = fopen(cert_file, "r");
    X509 *cert = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (!cert) { fprintf(stderr, "cannot read %s\n", cert_file); return 2; }
    iotsafe_dane *d = iotsafe_dane_new(resolver, anchor);
    if (!d) { fprintf(stderr, "new: %s\n", iotsafe_dane_last_error()); return 2; }
    if (iotsafe_dane_verify_client(d, cert, NULL, argv[4]) != 1) {
        fprintf(stderr, "parent: %s\n", iotsafe_dane_last_error());
        return 3;
    }
    pid_t pid = fork();
    if (pid == 0) {
        alarm(10);
        int rc = iotsafe_dane_verify_client(d, cert, NULL, argv[5]);
        if (rc != 1) fprintf(stderr, "child: %d %s\n", rc, iotsafe_dane_last_error());
        _exit(rc == 1 ? 0 : 4);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "child killed by signal %d (hung)\n", WTERMSIG(status));
        return 5;
    }
    printf("child exit %d\n", WEXITSTATUS(status));
    iotsafe_dane_free(d);
    X509_free(cert);
    return WEXITSTATUS(status);
}
"#;

#[test]
fn c_server_that_forks_verifies_devices_in_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let device = pki::leaf(d, "dev", "dev", &[], None);
    let record = pki::dane_ee_record(&device.cert);
    let lines = [
        format!("before._device 300 IN TLSA {record}"),
        format!("after._device 300 IN TLSA {record}"),
    ];
    let extra: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("iotregistry.test.", l.as_str()))
        .collect();
    let dns = dns::TestDns::start(&extra);
    let program = compile_c(d, FORKING_C_PROGRAM);
    let out = Command::new(&program)
        .arg(dns.addr().to_string())
        .arg(dns.trust_anchor_file())
        .arg(&device.cert_path)
        .args([
            "before._device.iotregistry.test",
            "after._device.iotregistry.test",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    assert_eq!(common::stdout(&out).trim(), "child exit 0");
}

/// `source` built against the library and header of this repository.
fn compile_c(dir: &Path, source: &str) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = common::built_library_dir();
    let src = dir.join("prog.c");
    std::fs::write(&src, source).unwrap();
    let program = dir.join("prog");
    let out = Command::new("cc")
        .args([
            "-std=c11",
            "-D_POSIX_C_SOURCE=200809L",
            "-Wall",
            "-Werror",
            "-I",
        ])
        .arg(root.join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&program)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-liotsafe_dane", "-lssl", "-lcrypto"])
        .output()
        .expect("a C compiler");
    assert!(out.status.success(), "{}", common::stderr(&out));
    program
}
