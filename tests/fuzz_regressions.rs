//! Every input a fuzz target ever crashed on (`fuzz/regressions/<target>/`) and every seed of its
//! corpus (`fuzz/corpus/<target>/`) replayed through the same function the target runs
//! (`iotsafe_dane::fuzzing`, `iotsafe_registry::fuzzing`), on the stable toolchain: a parser
//! that panics or aborts on any of them fails here, without a fuzzer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Every fuzz target, by name.
fn targets() -> impl Iterator<Item = &'static (&'static str, fn(&[u8]))> {
    iotsafe_dane::fuzzing::TARGETS
        .iter()
        .chain(iotsafe_registry::fuzzing::TARGETS)
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.retain(|f| f.is_file());
    files.sort();
    files
}

/// Runs every kept input of `target`; fails naming each input that panicked.
fn replay(target: &str) {
    let (_, run) = targets()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = inputs(&root.join("corpus").join(target));
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seed");
    let regressions = inputs(&root.join("regressions").join(target));
    let mut failed = Vec::new();
    for file in seeds.iter().chain(&regressions) {
        let data = std::fs::read(file).unwrap();
        // Printed first: an abort (not a panic) ends the process, and this says on what.
        eprintln!("replaying {}", file.display());
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target} panicked on: {failed:#?}");
    eprintln!(
        "{target}: {} seeds and {} regression inputs replayed",
        seeds.len(),
        regressions.len()
    );
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        #[test]
        fn every_fuzz_target_is_replayed_here() {
            let mut here = vec![$(stringify!($target)),*];
            let mut all: Vec<&str> = targets().map(|(name, _)| *name).collect();
            here.sort();
            all.sort();
            assert_eq!(here, all);
        }
    };
}

replay_tests!(
    apdu_tlv,
    applet_objects,
    applet_card,
    modem_at,
    keyref,
    tlsa_rdata,
    owner_name,
    clientid_ext,
    openssl_cnf,
    tsig_key_file,
);
