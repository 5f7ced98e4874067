//! TSIG keys (RFC 8945) as operators hold them: BIND's `tsig-keygen` file, knot's `keymgr -t`
//! output, or the inline `NAME:ALG:BASE64`.
//!
//! The parsers are strict: one key per file, every field once, nothing they do not know
//! (a file that also holds something else is more likely the wrong file than a key). Errors
//! name the file and line. Sizes are bounded: the file, the name, the secret.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_resolver::proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_resolver::proto::rr::{Name, TSigner};

/// Largest key file read (a key file is a few lines).
const MAX_FILE_BYTES: u64 = 16 * 1024;
/// Largest secret accepted, decoded (HMAC keys longer than the hash block are hashed anyway).
const MAX_SECRET_BYTES: usize = 256;
/// How far a request's time may be from the server's clock. RFC 8945 §10 recommends 300 s;
/// shorter here because the fudge is also how long a signed request stays acceptable to the
/// server: a minute still allows for ordinary clock drift between NTP-synchronised machines,
/// and bounds the window in which a request held back on the way could still be delivered (the
/// SOA prerequisite of every change stops replays of requests that did arrive, see the crate
/// documentation).
pub const FUDGE_SECONDS: u16 = 60;

/// A TSIG key: its name (as the server knows it), algorithm and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    pub secret: Vec<u8>,
}

/// Why a key could not be read: where (file and line, when from a file) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub why: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "TSIG key {}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "TSIG key {}: ", file.display())?,
            (None, _) => f.write_str("TSIG key: ")?,
        }
        f.write_str(&self.why)
    }
}

impl std::error::Error for KeyError {}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "TsigKey({} {})", self.name, self.algorithm.to_name())
    }
}

impl TsigKey {
    /// Reads a key file in BIND's (`key "name" { ... };`) or knot's (`key:` / `- id:`) syntax.
    pub fn from_file(path: &Path) -> Result<TsigKey, KeyError> {
        let err = |line, why: String| KeyError {
            file: Some(path.to_path_buf()),
            line,
            why,
        };
        let bytes = crate::read_bounded(path, MAX_FILE_BYTES, false).map_err(|e| {
            err(
                None,
                format!("cannot read: {e} (a key file is at most {MAX_FILE_BYTES} bytes)"),
            )
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| err(None, "cannot read as text: not UTF-8".into()))?;
        parse_text(&text).map_err(|(line, why)| err(line, why))
    }

    /// The signer that signs requests with this key and checks the responses.
    pub fn signer(&self) -> TSigner {
        TSigner::new(
            self.secret.clone(),
            self.algorithm.clone(),
            self.name.clone(),
            FUDGE_SECONDS,
        )
        .expect("only algorithms TSigner supports are parsed")
    }
}

/// The inline form `NAME:ALG:BASE64`, e.g. `registry-key:hmac-sha256:c2VjcmV0...`.
impl FromStr for TsigKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<TsigKey, KeyError> {
        let err = |why: String| KeyError {
            file: None,
            line: None,
            why,
        };
        let fields: Vec<&str> = text.trim().splitn(3, ':').collect();
        let [name, algorithm, secret] = fields[..] else {
            return Err(err("expected NAME:ALG:BASE64".into()));
        };
        // The messages below never quote the field that may be the secret.
        if algorithm_of(name).is_ok() && algorithm_of(algorithm).is_err() {
            return Err(err(format!(
                "expected NAME:ALG:BASE64, got the algorithm {name:?} first (write NAME:{name}:BASE64)"
            )));
        }
        if algorithm_of(algorithm).is_err() && algorithm_of(secret).is_ok() {
            return Err(err(format!(
                "expected NAME:ALG:BASE64, got the algorithm {secret:?} last (write NAME:{secret}:BASE64)"
            )));
        }
        key(name, algorithm, secret).map_err(err)
    }
}

/// A key from its three fields, each checked.
fn key(name: &str, algorithm: &str, secret: &str) -> Result<TsigKey, String> {
    Ok(TsigKey {
        name: key_name(name)?,
        algorithm: algorithm_of(algorithm)?,
        secret: secret_of(secret)?,
    })
}

fn key_name(text: &str) -> Result<Name, String> {
    if text.is_empty() || text.len() > 255 {
        return Err(format!(
            "key name {:?}: 1 to 255 characters",
            printable_prefix(text)
        ));
    }
    let mut name = Name::from_ascii(text)
        .map_err(|e| format!("key name {text:?} is not a domain name: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The algorithms hickory's `TSigner` computes; the others are refused by name.
fn algorithm_of(text: &str) -> Result<TsigAlgorithm, String> {
    match text.to_ascii_lowercase().trim_end_matches('.') {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        "hmac-md5" | "hmac-md5.sig-alg.reg.int" | "hmac-sha1" | "hmac-sha224" => Err(format!(
            "algorithm {text} is not supported: use hmac-sha256, hmac-sha384 or hmac-sha512"
        )),
        _ if looks_like_a_secret(text) => Err(
            "the algorithm field holds what looks like the secret (not shown): the forms are \
             NAME:ALG:BASE64, `algorithm ALG; secret \"BASE64\";`, `algorithm: ALG` then \
             `secret: BASE64`"
                .into(),
        ),
        // Longer than any algorithm name: perhaps a secret that is not canonical base64, so
        // none of it is shown.
        _ if text.len() > LONGEST_ALGORITHM_NAME => Err(format!(
            "unknown algorithm ({} characters, not shown: longer than any algorithm name; are \
             the fields swapped?) (hmac-sha256, hmac-sha384 or hmac-sha512)",
            text.len()
        )),
        _ => Err(format!(
            "unknown algorithm {:?} (hmac-sha256, hmac-sha384 or hmac-sha512)",
            printable_prefix(text)
        )),
    }
}

/// `hmac-md5.sig-alg.reg.int`, the longest name an algorithm field holds.
const LONGEST_ALGORITHM_NAME: usize = 24;

/// Whether `text` decodes as base64 of 16 bytes or more: a key, not a name or algorithm.
fn looks_like_a_secret(text: &str) -> bool {
    data_encoding::BASE64
        .decode(text.as_bytes())
        .is_ok_and(|bytes| bytes.len() >= 16)
}

/// Whether an unknown knot field may be named in a message: a short lower-case word, as
/// field names are, and not one beginning as `secret` (the keyword glued to its value, a
/// line's colon further on).
fn shows_as_a_field(field: &str) -> bool {
    field.len() <= 16
        && !field.starts_with("secret")
        && field
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// At most the first 24 characters of `text`, for a message (an algorithm's or a field's
/// name is short; whatever is longer is cut rather than echoed whole).
fn printable_prefix(text: &str) -> String {
    let cut: String = text.chars().take(24).collect();
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// A statement's name as an error may print it: only the known ones (an unknown word may be a
/// secret written without its keyword).
fn statement(field: &str) -> &str {
    match field {
        "algorithm" | "secret" => field,
        _ => "the statement",
    }
}

fn secret_of(text: &str) -> Result<Vec<u8>, String> {
    if text.len() > MAX_SECRET_BYTES * 2 {
        return Err(format!(
            "secret longer than {MAX_SECRET_BYTES} bytes is not a TSIG key"
        ));
    }
    let secret = data_encoding::BASE64
        .decode(text.as_bytes())
        .map_err(|e| format!("secret is not base64: {e}"))?;
    match secret.len() {
        0 => Err("empty secret".into()),
        n if n > MAX_SECRET_BYTES => Err(format!(
            "secret of {n} bytes, longer than {MAX_SECRET_BYTES}"
        )),
        _ => Ok(secret),
    }
}

pub(crate) type LineError = (Option<usize>, String);

/// One of the two file syntaxes: knot's when the first line that is not a comment is `key:`,
/// else BIND's.
pub(crate) fn parse_text(text: &str) -> Result<TsigKey, LineError> {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match first {
        None => Err((None, "no key in the file".into())),
        Some("key:") => parse_knot(text),
        Some(_) => parse_bind(text),
    }
}

/// knot's syntax, as `keymgr -t NAME ALG` prints it:
/// ```text
/// # hmac-sha256:NAME:SECRET
/// key:
///   - id: NAME
///     algorithm: hmac-sha256
///     secret: SECRET
/// ```
fn parse_knot(text: &str) -> Result<TsigKey, LineError> {
    let mut fields: [Option<(usize, String)>; 3] = Default::default();
    let mut seen_section = false;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "key:" {
            if seen_section {
                return Err((Some(line_no), "a second `key:` section".into()));
            }
            seen_section = true;
            continue;
        }
        let (field, value) = line
            .strip_prefix("- ")
            .unwrap_or(line)
            .split_once(':')
            // Not the line itself: it may be the secret without its colon.
            .ok_or_else(|| (Some(line_no), "expected `field: value`".to_string()))?;
        let slot = match field.trim() {
            "id" => 0,
            "algorithm" => 1,
            "secret" => 2,
            other if shows_as_a_field(other) => {
                return Err((Some(line_no), format!("unknown field {other:?}")))
            }
            _ => return Err((Some(line_no), "unknown field (not shown)".into())),
        };
        if line.starts_with("- ") != (slot == 0) {
            return Err((
                Some(line_no),
                "a key entry starts with `- id:` (one key per file)".into(),
            ));
        }
        if fields[slot].is_some() {
            return Err((Some(line_no), format!("{} given twice", field.trim())));
        }
        let value = value.trim().trim_matches('"').to_string();
        fields[slot] = Some((line_no, value));
    }
    let [id, algorithm, secret] = fields;
    let need = |f: Option<(usize, String)>, what: &str| {
        f.ok_or_else(|| (None, format!("no `{what}:` in the key")))
    };
    let (id, algorithm, secret) = (
        need(id, "id")?,
        need(algorithm, "algorithm")?,
        need(secret, "secret")?,
    );
    Ok(TsigKey {
        name: key_name(&id.1).map_err(|e| (Some(id.0), e))?,
        algorithm: algorithm_of(&algorithm.1).map_err(|e| (Some(algorithm.0), e))?,
        secret: secret_of(&secret.1).map_err(|e| (Some(secret.0), e))?,
    })
}

/// A token of BIND's syntax and the line it is on.
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Semicolon,
}

/// BIND's syntax, as `tsig-keygen NAME` writes it:
/// ```text
/// key "NAME" {
///     algorithm hmac-sha256;
///     secret "SECRET";
/// };
/// ```
fn parse_bind(text: &str) -> Result<TsigKey, LineError> {
    let tokens = bind_tokens(text)?;
    let mut it = tokens.into_iter().peekable();
    let mut next = |want: &str| {
        it.next()
            .ok_or_else(|| (None, format!("the key ends early: expected {want}")))
    };
    let (line, keyword) = next("`key`").map_err(|_| (None, "no key in the file".into()))?;
    if keyword != Token::Word("key".into()) {
        return Err((
            Some(line),
            "expected BIND's `key \"name\" { ... };` or knot's `key:` section".into(),
        ));
    }
    let (name_line, name) = match next("the key's name")? {
        (l, Token::Quoted(n) | Token::Word(n)) => (l, n),
        (l, _) => return Err((Some(l), "expected the key's name".into())),
    };
    if !matches!(next("`{`")?, (_, Token::Open)) {
        return Err((Some(name_line), "expected `{` after the key's name".into()));
    }
    let mut algorithm = None;
    let mut secret = None;
    loop {
        let (line, token) = next("`}`")?;
        let field = match token {
            Token::Close => break,
            Token::Word(w) => w,
            _ => return Err((Some(line), "expected `algorithm`, `secret` or `}`".into())),
        };
        let value = match next("a value")? {
            (_, Token::Word(v) | Token::Quoted(v)) => v,
            (l, _) => {
                return Err((
                    Some(l),
                    format!("expected a value after {}", statement(&field)),
                ))
            }
        };
        if !matches!(next("`;`")?, (_, Token::Semicolon)) {
            // Never the value: it may be the secret.
            return Err((
                Some(line),
                format!("expected `;` after {}", statement(&field)),
            ));
        }
        let slot = match field.as_str() {
            "algorithm" => &mut algorithm,
            "secret" => &mut secret,
            other => {
                return Err((
                    Some(line),
                    format!(
                        "unknown statement {:?} (algorithm or secret)",
                        printable_prefix(statement(other))
                    ),
                ))
            }
        };
        if slot.is_some() {
            return Err((Some(line), format!("`{field}` given twice")));
        }
        *slot = Some((line, value));
    }
    match next("`;` after `}`")? {
        (_, Token::Semicolon) => {}
        (l, _) => return Err((Some(l), "expected `;` after `}`".into())),
    }
    if let Some((line, _)) = it.next() {
        // ddns-confgen's default output is such a file: the key, then an `update-policy`
        // example and an nsupdate command for the operator to copy elsewhere.
        return Err((
            Some(line),
            "more after the key (one key per file, alone: as `tsig-keygen NAME` or \
             `ddns-confgen -q -k NAME` writes it)"
                .into(),
        ));
    }
    let (alg_line, algorithm) = algorithm.ok_or((None, "no `algorithm` in the key".into()))?;
    let (secret_line, secret) = secret.ok_or((None, "no `secret` in the key".into()))?;
    Ok(TsigKey {
        name: key_name(&name).map_err(|e| (Some(name_line), e))?,
        algorithm: algorithm_of(&algorithm).map_err(|e| (Some(alg_line), e))?,
        secret: secret_of(&secret).map_err(|e| (Some(secret_line), e))?,
    })
}

/// Splits BIND's syntax into tokens, dropping `#`, `//` and `/* */` comments.
fn bind_tokens(text: &str) -> Result<Vec<(usize, Token)>, LineError> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => skip_line(&mut chars, &mut line),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars, &mut line),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let start = line;
                let mut last = ' ';
                loop {
                    match chars.next() {
                        None => return Err((Some(start), "unterminated /* comment".into())),
                        Some('/') if last == '*' => break,
                        Some(c) => {
                            line += usize::from(c == '\n');
                            last = c;
                        }
                    }
                }
            }
            '{' => tokens.push((line, Token::Open)),
            '}' => tokens.push((line, Token::Close)),
            ';' => tokens.push((line, Token::Semicolon)),
            '"' => {
                let mut quoted = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\n') | None => {
                            return Err((Some(line), "unterminated quoted string".into()))
                        }
                        Some(c) => quoted.push(c),
                    }
                }
                tokens.push((line, Token::Quoted(quoted)));
            }
            c => {
                let mut word = c.to_string();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "{};\"#".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push((line, Token::Word(word)));
            }
        }
    }
    Ok(tokens)
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, line: &mut usize) {
    for c in chars.by_ref() {
        if c == '\n' {
            *line += 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests;
