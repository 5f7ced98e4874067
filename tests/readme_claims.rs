//! The README's threat model points every claim at a test: each cited test must exist, so a
//! renamed or deleted test cannot leave a claim standing on nothing.

use std::fs;
use std::path::{Path, PathBuf};

const SECTION: &str = "## Threat model";

/// The section of the README that starts with `heading`, up to the next `## ` heading.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no `{heading}` section"));
    let rest = &readme[start + heading.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    &rest[..end]
}

/// Backquoted `path::to::test` names in the text (a single word is not a citation).
fn citations(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.contains("::") && s.chars().all(|c| c.is_alphanumeric() || "_:".contains(c)))
        .map(str::to_string)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read source directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `fn test(` in the file, or, in a file whose tests a macro generates from a list of names
/// (`tests/fuzz_regressions.rs`), the name alone on a line of that list.
fn defines(file: &Path, test: &str) -> bool {
    let Ok(text) = fs::read_to_string(file) else {
        return false;
    };
    text.contains(&format!("fn {test}("))
        || (text.contains("macro_rules!")
            && text.lines().any(|line| line.trim() == format!("{test},")))
}

/// Where the library's Rust paths live: `iotsafe_dane::<layer>::...` re-exports each layer's
/// crate, so a citation's first module names the crate's source directory.
fn source_dir(root: &Path, layer: &str) -> (PathBuf, bool) {
    match layer {
        "iotsafe" => (root.join("crates/card/src"), true),
        "dane" => (root.join("crates/dane/src"), true),
        "provider" => (root.join("crates/provider/src"), true),
        _ => (root.join("src"), false),
    }
}

/// `binary::test` is a function of `tests/binary.rs`; `a::b::tests::test` a unit test in a
/// source file of module `a::b` (the module file or a file of its directory), `a` being a layer
/// crate re-exported by the library or a module of the library itself.
fn cited_test_exists(root: &Path, citation: &str) -> bool {
    let parts: Vec<&str> = citation.split("::").collect();
    let (test, modules) = parts.split_last().expect("a citation has two parts");
    if let [binary] = modules {
        return defines(&root.join("tests").join(format!("{binary}.rs")), test);
    }
    let modules: Vec<&str> = modules.iter().copied().filter(|m| *m != "tests").collect();
    let (dir, layer_crate) = source_dir(root, modules[0]);
    let inner = if layer_crate {
        &modules[1..]
    } else {
        &modules[..]
    };
    let module_path = inner.join("/");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    files.iter().any(|file| {
        let relative = file.strip_prefix(&dir).unwrap_or(file);
        let relative = relative.to_string_lossy();
        relative.starts_with(&module_path) && defines(file, test)
    })
}

#[test]
fn every_test_the_threat_model_cites_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).expect("README.md");
    let cited = citations(section(&readme, SECTION));
    assert!(
        cited.len() >= 20,
        "the threat model cites its tests ({} found)",
        cited.len()
    );
    let missing: Vec<&String> = cited
        .iter()
        .filter(|c| !cited_test_exists(root, c))
        .collect();
    assert!(
        missing.is_empty(),
        "the threat model cites tests that do not exist: {missing:?}"
    );
}
