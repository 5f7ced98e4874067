//! `iotsafe registry` as an operator runs it against the test hierarchy's knotd: the rig's
//! server as the zone's primary and as the validating resolver, its trust anchor, its TSIG key.
#![allow(dead_code)]

use std::process::{Command, Output};

use super::dns::TestDns;

/// `iotsafe registry COMMAND NAME` with the server, zone (the updatable zone NAME is in),
/// resolver and trust anchor of `dns`, without a key (`--tsig-key`/`--tsig` are the caller's).
pub fn command(dns: &TestDns, command: &str, name: &str) -> Command {
    command_via(dns, command, name, dns.addr(), dns.addr())
}

/// As [`command`], with the update sent to `server` and the wait asking `resolver` (a proxy on
/// the way, a caching resolver, nothing at all).
pub fn command_via(
    dns: &TestDns,
    command: &str,
    name: &str,
    server: std::net::SocketAddr,
    resolver: std::net::SocketAddr,
) -> Command {
    let zone = if name.trim_end_matches('.').ends_with("example.test") {
        "example.test."
    } else {
        "iotregistry.test."
    };
    let mut cmd = Command::new(super::workspace_binary("iotsafe"));
    cmd.args(["registry", command, name])
        .args(["--server", &server.to_string(), "--zone", zone])
        .args(["--resolver", &resolver.to_string(), "--trust-anchor"])
        .arg(dns.trust_anchor_file());
    cmd
}

/// Runs `iotsafe registry COMMAND NAME ARGS` with the rig's key (BIND's file) and returns its
/// standard output; the test fails, with the tool's message, when the change fails.
pub fn change(dns: &TestDns, subcommand: &str, name: &str, args: &[&str]) -> String {
    let out: Output = command(dns, subcommand, name)
        .args(args)
        .arg("--tsig-key")
        .arg(dns.tsig_bind_file())
        .output()
        .expect("run iotsafe registry");
    assert!(
        out.status.success(),
        "iotsafe registry {subcommand} {name} failed: {}",
        super::stderr(&out)
    );
    super::stdout(&out)
}
