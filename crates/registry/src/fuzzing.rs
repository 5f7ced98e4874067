//! What this crate's fuzz targets (`fuzz/fuzz_targets/`) run, in the crate so that the
//! regression tests (`tests/fuzz_regressions.rs`) replay a kept input through exactly the same
//! code on the stable toolchain. Not a stable API.

use crate::key;
use crate::TsigKey;

/// What a fuzz target runs on one input.
pub type Target = fn(&[u8]);

/// Every target by the name of its directory under `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: &[(&str, Target)] = &[("tsig_key_file", tsig_key_file)];

/// A TSIG key file (BIND's or knot's syntax, as `--tsig-key` reads it) and the inline form
/// (`--tsig NAME:ALG:BASE64`). Beyond "no panic": no error shows the first 16 characters of
/// what the input gave as a secret (unless they also stand elsewhere in the input, as a name
/// may). A parsed key's `Debug` shows its name and algorithm only, by construction.
pub fn tsig_key_file(data: &[u8]) {
    // A file that is not UTF-8 is refused before it is parsed.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err((_, why)) = key::parse_text(text) {
        assert_hides(&why, text, &given_secrets(text));
    }
    if let Err(e) = text.parse::<TsigKey>() {
        let third = text.trim().splitn(3, ':').nth(2).map(str::to_string);
        assert_hides(&e.to_string(), text, &Vec::from_iter(third));
    }
}

/// What follows each `secret` keyword where the parser of the file's syntax takes one: knot's
/// `secret:` opening a line (or `secret` glued to a value) (when the file is knot's: its first line that is not a comment is
/// `key:`), else BIND's `secret` word (after a blank, `{` or `;`, not on the line that names the
/// key, whose name an error may quote) and its quoted value.
fn given_secrets(text: &str) -> Vec<String> {
    let value = |rest: &str| -> String {
        rest.trim_start_matches([':', ' ', '\t', '"'])
            .chars()
            .take_while(|c| !matches!(c, '"' | ';' | '\n' | '\r' | ' ' | '\t'))
            .collect()
    };
    let knot = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        == Some("key:");
    if knot {
        return text
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix("secret"))
            .map(value)
            .collect();
    }
    text.lines()
        .filter(|line| !line.contains("key"))
        .flat_map(|line| {
            line.match_indices("secret")
                .filter(|(at, word)| {
                    let before = line[..*at].chars().next_back();
                    let after = line[at + word.len()..].chars().next();
                    before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ';')
                        && after.is_some_and(char::is_whitespace)
                })
                .map(|(at, word)| value(&line[at + word.len()..]))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `shown` holds none of `secrets`' first 16 characters, unless these are not base64 (a secret
/// is; other text may be quoted, and escaped, as a name is) or are in `input` more than once
/// (then they are also something else there).
fn assert_hides(shown: &str, input: &str, secrets: &[String]) {
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    for secret in secrets {
        let head: String = secret.chars().take(16).collect();
        if head.chars().count() < 16
            || !head.chars().all(base64)
            || input.matches(head.as_str()).count() > 1
        {
            continue;
        }
        assert!(
            !shown.contains(&head),
            "a secret's first 16 characters ({head:?}) are shown: {shown}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn a_shown_secret_is_caught_and_a_name_that_equals_it_is_not() {
        let input = format!("key \"k\" {{\n algorithm x; secret \"{SECRET}\"; }};");
        let secrets = given_secrets(&input);
        assert_eq!(secrets, [SECRET]);
        let shown = format!("bad algorithm near {}", &SECRET[..20]);
        let caught = std::panic::catch_unwind(|| assert_hides(&shown, &input, &secrets));
        assert!(caught.is_err(), "a secret's head in a message is caught");
        let named = format!("key \"{SECRET}\" {{\n secret \"{SECRET}\"; }};");
        assert_hides(&shown, &named, &given_secrets(&named));
    }
}
