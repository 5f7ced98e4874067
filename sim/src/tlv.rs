//! The simple TLV coding IoT SAFE uses: one-byte tags, BER lengths.

/// Tag of the ECDSA signature in UPDATE data and responses.
pub const TAG_SIGNATURE: u8 = 0x33;

/// Parses a sequence of TLVs. `None` on any malformed or truncated item.
///
/// Some applets encode the signature as `33 00 40 r||s` (a two-byte length
/// without the BER 0x82 marker); that form is accepted for tag 33 only.
pub fn parse(mut data: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let tag = data[0];
        let (len, hdr) = read_len(tag, &data[1..])?;
        let end = 1 + hdr + len;
        if data.len() < end {
            return None;
        }
        out.push((tag, &data[1 + hdr..end]));
        data = &data[end..];
    }
    Some(out)
}

/// Returns (value length, number of length bytes).
fn read_len(tag: u8, b: &[u8]) -> Option<(usize, usize)> {
    match *b.first()? {
        0x00 if tag == TAG_SIGNATURE && b.get(1) == Some(&0x40) => Some((0x40, 2)),
        n if n < 0x80 => Some((n as usize, 1)),
        0x81 => Some((*b.get(1)? as usize, 2)),
        0x82 => Some((u16::from_be_bytes([*b.get(1)?, *b.get(2)?]) as usize, 3)),
        _ => None,
    }
}

/// First value with the given tag.
pub fn find<'a>(items: &[(u8, &'a [u8])], tag: u8) -> Option<&'a [u8]> {
    items.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
}

/// Appends one TLV with a BER length.
pub fn put(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    match value.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
        n => {
            let n = u16::try_from(n).expect("TLV value over 64 KiB");
            out.push(0x82);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(value);
}

/// Size of a TLV (tag, length bytes, value) with a value of `len` bytes.
pub fn encoded_len(len: usize) -> usize {
    let len_bytes = match len {
        n if n < 0x80 => 1,
        n if n < 0x100 => 2,
        _ => 3,
    };
    1 + len_bytes + len
}

/// One TLV as a new vector.
pub fn encode(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    put(&mut out, tag, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_forms() {
        let mut b = encode(0x84, &[1]);
        b.extend(encode(0x20, &[0u8; 200]));
        let items = parse(&b).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(find(&items, 0x20).unwrap().len(), 200);
        let mut sig = vec![0x33, 0x00, 0x40];
        sig.extend([7u8; 64]);
        assert_eq!(parse(&sig).unwrap()[0].1.len(), 64);
        assert!(parse(&[0x84, 2, 1]).is_none());
        assert!(parse(&[0x84, 0x83, 1, 1, 1]).is_none());
        assert!(parse(&[0x84]).is_none());
    }
}
