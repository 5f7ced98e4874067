//! The architecture as Cargo enforces it: what each layer crate may depend on, and what leaves
//! the core library. A dependency added against these rules fails here, not in a review.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

/// The names in a manifest's `[dependencies]` table (not dev- or build-dependencies).
fn dependencies(manifest: &str) -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = fs::read_to_string(root.join(manifest)).expect("manifest");
    let mut in_table = false;
    let mut names = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == "[dependencies]";
        } else if in_table && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            names.insert(name.to_string());
        }
    }
    names
}

fn assert_none_of(manifest: &str, forbidden: &[&str], why: &str) {
    let deps = dependencies(manifest);
    assert!(!deps.is_empty(), "{manifest}: no [dependencies] found");
    let found: Vec<&&str> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
    assert!(found.is_empty(), "{manifest} depends on {found:?}: {why}");
}

#[test]
fn the_card_layer_knows_no_openssl_and_no_dns() {
    assert_none_of(
        "crates/card/Cargo.toml",
        &["openssl", "openssl-sys", "dane", "hickory-resolver", "clap"],
        "the card protocol is plain bytes over PC/SC or a modem",
    );
}

#[test]
fn the_dane_layer_knows_no_cards() {
    assert_none_of(
        "crates/dane/Cargo.toml",
        &["iotsafe-card", "pcsc", "iotsafe-provider", "clap"],
        "a device's key is the key in its certificate, wherever it lives",
    );
}

#[test]
fn the_registry_layer_knows_no_cards_and_no_provider() {
    assert_none_of(
        "crates/registry/Cargo.toml",
        &[
            "iotsafe-card",
            "pcsc",
            "iotsafe-provider",
            "iotsafe-dane",
            "clap",
        ],
        "a registry publishes the key in a certificate; it never sees the device's card",
    );
}

#[test]
fn the_provider_knows_no_dns() {
    assert_none_of(
        "crates/provider/Cargo.toml",
        &["dane", "hickory-resolver", "tokio", "clap"],
        "the provider serves keys; DANE is the application's or the adapters' business",
    );
}

#[test]
fn the_core_library_has_no_command_line_parser() {
    assert_none_of(
        "Cargo.toml",
        &["clap"],
        "clap belongs to the tools (cli/, sim/), not to the library programs load",
    );
}

/// The workspace's members, as the root manifest lists them.
fn members() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = fs::read_to_string(root.join("Cargo.toml")).expect("manifest");
    let start = text.find("members = [").expect("a members list") + "members = [".len();
    let end = start + text[start..].find(']').expect("end of the members list");
    text[start..end]
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Adapters (a broker plugin, the preload shim, whatever comes next) reach the library through
/// its C ABI and link -liotsafe_dane: a Rust crate depending on the core crates would embed a
/// second copy of the resolver cache and card connection in the process that loads it. Only
/// the layers themselves, the core library and the command-line tool (a program of its own)
/// may depend on them.
#[test]
fn adapters_use_the_c_abi_not_the_core_crates() {
    const CORE: [&str; 6] = [
        "iotsafe-dane",
        "dane",
        "iotsafe-provider",
        "iotsafe-card",
        "iotsafe-hex",
        "iotsafe-registry",
    ];
    const LAYERS: [&str; 7] = [
        ".",
        "crates/hex",
        "crates/card",
        "crates/dane",
        "crates/provider",
        "crates/registry",
        "cli",
    ];
    let members = members();
    assert!(members.iter().any(|m| m == "cli"), "{members:?}");
    for member in members.iter().filter(|m| !LAYERS.contains(&m.as_str())) {
        let deps = dependencies(&format!("{member}/Cargo.toml"));
        let core: Vec<&&str> = CORE.iter().filter(|c| deps.contains(**c)).collect();
        assert!(
            core.is_empty(),
            "{member} depends on {core:?}: adapters link the core library's C ABI \
             (-liotsafe_dane), one copy per process"
        );
    }
}

/// Only the provider's entry point and the C API leave libiotsafe_dane.so: a Rust symbol
/// exported from it would invite an adapter to link the layers again (a second copy of the
/// state in one process).
#[test]
fn only_the_c_abi_leaves_the_core_library() {
    let library = common::built_library_dir().join("libiotsafe_dane.so");
    let out = Command::new("nm")
        .args(["-D", "--defined-only", "--format=posix"])
        .arg(&library)
        .output()
        .expect("nm (binutils)");
    assert!(out.status.success(), "nm failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let exported: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|t| t == "T"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(exported.contains(&"OSSL_provider_init"), "{exported:?}");
    assert!(exported.contains(&"iotsafe_dane_shared"), "{exported:?}");
    let foreign: Vec<&&str> = exported
        .iter()
        .filter(|s| **s != "OSSL_provider_init" && !s.starts_with("iotsafe_dane_"))
        .collect();
    assert!(foreign.is_empty(), "exported beyond the C ABI: {foreign:?}");
}
