//! Hex helpers for the trace, the state file and the command line.

pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Decodes hex, ignoring spaces and colons so `"A0 00 00"` works too.
pub fn decode(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| !matches!(c, b' ' | b':' | b'\t'))
        .collect();
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits in {s:?}"));
    }
    digits
        .chunks(2)
        .map(|p| {
            let pair = std::str::from_utf8(p).map_err(|e| e.to_string())?;
            u8::from_str_radix(pair, 16).map_err(|_| format!("bad hex {pair:?} in {s:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn roundtrip() {
        assert_eq!(super::encode(&[0x0a, 0xff]), "0AFF");
        assert_eq!(super::decode("0a ff").unwrap(), vec![0x0a, 0xff]);
        assert!(super::decode("0").is_err());
        assert!(super::decode("zz").is_err());
    }
}
