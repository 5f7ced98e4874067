//! The README's threat model points every claim at a test: each cited test must exist, so a
//! renamed or deleted test cannot leave a claim standing on nothing. The same holds for every
//! test and every file any of the project's documents cites.

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

/// The project's documents, whose citations of tests and files are checked.
const DOCUMENTS: &[&str] = &["README.md", "c-examples/README.md", "sim/README.md"];

/// Backquoted file names with the extensions of the repository's sources and documents.
fn cited_files(text: &str) -> Vec<String> {
    const EXTENSIONS: &[&str] = &[".rs", ".md", ".c", ".h", ".cnf", ".sh", ".toml", ".in"];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            !s.starts_with('/')
                && s.chars().all(|c| c.is_alphanumeric() || "_./-".contains(c))
                && EXTENSIONS.iter().any(|e| s.ends_with(e))
        })
        .map(str::to_string)
        .collect()
}

/// Every file of the repository (build output and version control excluded), relative.
fn repository_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("read directory").flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        if path.is_dir() {
            repository_files(root, &path, out);
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_string_lossy().into_owned());
        }
    }
}

/// A file cited by its path from the root, or by the tail of its path (`proof/classify.rs` in
/// the row of the crate that holds it, `tls_client.c` beside the document).
#[test]
fn every_file_the_documents_cite_is_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    repository_files(root, root, &mut files);
    let mut missing = Vec::new();
    for document in DOCUMENTS {
        let text = fs::read_to_string(root.join(document)).expect("document");
        for cited in cited_files(&text) {
            let present = files
                .iter()
                .any(|f| *f == cited || f.ends_with(&format!("/{cited}")));
            if !present {
                missing.push(format!("{document}: {cited}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documents cite files that are not in the repository: {missing:?}"
    );
}

/// The test citations anywhere in the documents (`binary::test`, `module::tests::test`).
#[test]
fn every_test_the_documents_cite_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    for document in DOCUMENTS {
        let text = fs::read_to_string(root.join(document)).expect("document");
        for cited in citations(&text).into_iter().filter(|c| is_test_citation(c)) {
            if !cited_test_exists(root, &cited) {
                missing.push(format!("{document}: {cited}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documents cite tests that do not exist: {missing:?}"
    );
}

/// A citation of a test: a test binary's function (`card_tool::name`) or a unit test
/// (`...::tests::name`); module paths such as `dane::check` are not tests.
fn is_test_citation(citation: &str) -> bool {
    let parts: Vec<&str> = citation.split("::").collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    parts.contains(&"tests")
        || (parts.len() == 2 && root.join("tests").join(format!("{}.rs", parts[0])).exists())
}
