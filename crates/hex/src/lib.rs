//! Hex as users type it and as messages and zone files print it.

/// Upper-case hex without separators (APDUs, ids, as card tools print them).
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Lower-case hex without separators (DNS presentation form, digests).
pub fn encode_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes hex, ignoring spaces and colons between bytes.
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|c| !matches!(c, b' ' | b':')).collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            u8::from_str_radix(s, 16).map_err(|_| format!("'{s}' is not a hex byte"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_separators() {
        assert_eq!(super::decode("a0 00:05").unwrap(), [0xA0, 0x00, 0x05]);
        assert_eq!(super::encode(&[0xA0, 0x0F]), "A00F");
        assert!(super::decode("abc").is_err());
        assert!(super::decode("zz").is_err());
    }
}
