use std::io::Write;

use super::*;

const SECRET: &str = "I6yAQQ4aTXm82LUBISwyZoH6n7I5py2QSgKsEn1uVtI=";

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn from_text(text: &str) -> Result<TsigKey, KeyError> {
    TsigKey::from_file(file(text).path())
}

fn expected() -> TsigKey {
    TsigKey {
        name: Name::from_ascii("registry-key.").unwrap(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret: data_encoding::BASE64.decode(SECRET.as_bytes()).unwrap(),
    }
}

/// What `tsig-keygen registry-key` writes.
#[test]
fn reads_bind_tsig_keygen_output() {
    let text =
        format!("key \"registry-key\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{SECRET}\";\n}};\n");
    assert_eq!(from_text(&text).unwrap(), expected());
}

#[test]
fn reads_bind_syntax_with_comments_on_one_line() {
    let text = format!(
        "# made for the registry\n// by the operator\n/* a\n block */ key registry-key {{ secret \"{SECRET}\"; algorithm HMAC-SHA256; }};"
    );
    assert_eq!(from_text(&text).unwrap(), expected());
}

/// What `keymgr -t registry-key hmac-sha256` prints.
#[test]
fn reads_knot_keymgr_output() {
    let text = format!(
        "# hmac-sha256:registry-key:{SECRET}\nkey:\n  - id: registry-key\n    algorithm: hmac-sha256\n    secret: {SECRET}\n"
    );
    assert_eq!(from_text(&text).unwrap(), expected());
}

#[test]
fn reads_the_inline_form() {
    let key: TsigKey = format!("registry-key:hmac-sha256:{SECRET}")
        .parse()
        .unwrap();
    assert_eq!(key, expected());
}

#[test]
fn inline_form_with_the_algorithm_first_says_so() {
    let err = format!("hmac-sha256:registry-key:{SECRET}")
        .parse::<TsigKey>()
        .unwrap_err();
    assert!(err.why.contains("algorithm \"hmac-sha256\" first"), "{err}");
}

#[test]
fn inline_form_needs_three_fields() {
    let err = "registry-key:hmac-sha256".parse::<TsigKey>().unwrap_err();
    assert!(err.to_string().contains("NAME:ALG:BASE64"), "{err}");
}

/// Each malformed file is refused with the line that is wrong.
#[test]
fn malformed_bind_files_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "key \"k\" {\n algorithm hmac-sha256;\n secret \"not base64!\";\n};",
            3,
            "not base64",
        ),
        (
            "key \"k\" {\n algorithm hmac-md5;\n secret \"c2VjcmV0\";\n};",
            2,
            "not supported",
        ),
        (
            "key \"k\" {\n algorithm hmac-sha256;\n secret \"c2VjcmV0\";\n owner x;\n};",
            4,
            "unknown statement",
        ),
        (
            "key \"k\" {\n algorithm hmac-sha256;\n algorithm hmac-sha512;\n};",
            3,
            "given twice",
        ),
        (
            "key \"k\" {\n algorithm hmac-sha256\n secret \"c2VjcmV0\";\n};",
            2,
            "expected `;`",
        ),
        (
            "key \"k\" {\n algorithm hmac-sha256;\n secret \"c2VjcmV0;\n};",
            3,
            "unterminated",
        ),
        (
            "key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };\nkey \"j\" { };",
            2,
            "one key per file",
        ),
    ];
    for (text, line, why) in cases {
        let err = from_text(text).unwrap_err();
        assert_eq!(err.line, Some(*line), "{text:?}: {err}");
        assert!(err.why.contains(why), "{text:?}: {err}");
        assert!(err.to_string().contains(&format!(":{line}: ")), "{err}");
    }
}

#[test]
fn malformed_knot_files_name_the_line() {
    let cases: &[(&str, Option<usize>, &str)] = &[
        (
            "key:\n  - id: k\n    algorithm: hmac-sha256\n    secret: %%%\n",
            Some(4),
            "not base64",
        ),
        (
            "key:\n  - id: k\n    algorithm: hmac-sha256\n    storage: /tmp\n",
            Some(4),
            "unknown field \"storage\"",
        ),
        (
            "key:\n  - id: k\n    algorithm: hmac-sha256\n  - id: j\n",
            Some(4),
            "given twice",
        ),
        (
            "key:\n  - id: k\n    algorithm: hmac-sha256\n",
            None,
            "no `secret:`",
        ),
        (
            "key:\n  - id: k\n    algorithm: rsa\n    secret: c2VjcmV0\n",
            Some(3),
            "unknown algorithm",
        ),
    ];
    for (text, line, why) in cases {
        let err = from_text(text).unwrap_err();
        assert_eq!(err.line, *line, "{text:?}: {err}");
        assert!(err.why.contains(why), "{text:?}: {err}");
    }
}

#[test]
fn other_files_are_refused_at_their_first_line() {
    let err = from_text("\n\nserver:\n  listen: 0.0.0.0\n").unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    let err = from_text("# only a comment\n").unwrap_err();
    assert!(err.why.contains("no key"), "{err}");
}

#[test]
fn sizes_are_bounded() {
    let big = "#".repeat(20 * 1024);
    assert!(from_text(&big).unwrap_err().why.contains("bytes"));
    let long_secret = data_encoding::BASE64.encode(&[7u8; 300]);
    let err = format!("k:hmac-sha256:{long_secret}")
        .parse::<TsigKey>()
        .unwrap_err();
    assert!(err.why.contains("longer than"), "{err}");
    let long_name = "a".repeat(300);
    let err = format!("{long_name}:hmac-sha256:c2VjcmV0")
        .parse::<TsigKey>()
        .unwrap_err();
    assert!(err.why.contains("1 to 255"), "{err}");
    assert!(err.why.len() < 100, "an over-long name is cut: {err}");
    let err = "k:hmac-sha256:".parse::<TsigKey>().unwrap_err();
    assert!(err.why.contains("empty secret"), "{err}");
}

#[test]
fn a_missing_file_is_named() {
    let err = TsigKey::from_file(Path::new("/nonexistent/key")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/key"), "{err}");
}

#[test]
fn the_secret_is_not_in_debug_output() {
    let text = format!("{:?}", expected());
    assert!(
        !text.contains(SECRET) && text.contains("registry-key"),
        "{text}"
    );
}

/// A missing `;` or `:`, or the fields in the wrong order: the error names the line and what
/// was expected, never the secret.
#[test]
fn the_secret_is_never_in_an_error() {
    for text in [
        format!("key \"k\" {{ algorithm hmac-sha256; secret \"{SECRET}\" }};"),
        format!("key \"k\" {{ algorithm hmac-sha256; \"{SECRET}\"; }};"),
        format!("key \"k\" {{ algorithm hmac-sha256; {SECRET} }};"),
        format!("key:\n  - id: k\n    algorithm: hmac-sha256\n    secret {SECRET}\n"),
        format!("key:\n  - id: k\n    algorithm: {SECRET}\n    secret: {SECRET}\n"),
        // Not canonical base64 (its padding removed): still not shown, not even in part.
        format!(
            "key \"k\" {{ algorithm {}; secret \"{SECRET}\"; }};",
            SECRET.trim_end_matches('=')
        ),
    ] {
        let err = from_text(&text).unwrap_err().to_string();
        assert!(!err.contains(SECRET), "{err}");
        assert!(!err.contains(&SECRET[..12]), "{err}");
    }
    let err = from_text(&format!(
        "key \"k\" {{ algorithm hmac-sha256; secret \"{SECRET}\" }};"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains(":1: expected `;` after secret"), "{err}");
    for inline in [
        format!("k:{SECRET}:hmac-sha256"),
        format!("k:{SECRET}:{SECRET}"),
    ] {
        let err = inline.parse::<TsigKey>().unwrap_err().to_string();
        assert!(!err.contains(&SECRET[..20]), "{err}");
    }
    let err = format!("k:{SECRET}:hmac-sha256")
        .parse::<TsigKey>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("NAME:hmac-sha256:BASE64"), "{err}");
}

/// A key file that is a device or a FIFO is refused at once, not read without end.
#[test]
fn a_key_file_that_is_not_a_regular_file_is_refused_at_once() {
    let err = TsigKey::from_file(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a regular file"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = TsigKey::from_file(&fifo).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

/// knot's keyword glued to its value (a colon further on the line making it a field): the
/// field is not named, since it holds the secret (found by the fuzzer).
#[test]
fn a_secret_glued_to_its_keyword_is_not_shown() {
    let secret = "rwgeeeeeeeeeeeeeeeeeeQIct";
    let text = format!("key:\n  - id: k\n    algorithm: hmac-sha256\n    secret{secret}.x: y\n");
    let err = from_text(&text).unwrap_err();
    assert_eq!(err.line, Some(4), "{err}");
    assert!(err.why.contains("unknown field (not shown)"), "{err}");
    assert!(!err.to_string().contains(&secret[..8]), "{err}");
}
