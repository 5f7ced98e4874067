//! ISO 7816-4 command APDU parsing (short and extended lengths) and status words.

/// Status words used by the applet.
pub mod sw {
    pub const OK: u16 = 0x9000;
    pub const MORE_DATA: u16 = 0x6300;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const CHANNEL_NOT_SUPPORTED: u16 = 0x6881;
    pub const INCOMPATIBLE_FILE: u16 = 0x6981;
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    pub const INCORRECT_DATA: u16 = 0x6A80;
    pub const FUNC_NOT_SUPPORTED: u16 = 0x6A81;
    pub const NOT_FOUND: u16 = 0x6A82;
    pub const NO_MEMORY: u16 = 0x6A84;
    pub const INCORRECT_P1P2: u16 = 0x6A86;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const SIGNATURE_MISMATCH: u16 = 0x6D01;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    pub const UNKNOWN: u16 = 0x6F00;
}

/// A parsed command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// Expected response length; `Some(256)` for a short Le of 00,
    /// `Some(65536)` for an extended Le of 0000.
    pub le: Option<usize>,
}

/// A response APDU: data followed by the status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: u16,
}

impl Response {
    pub fn ok(data: Vec<u8>) -> Self {
        Response { data, sw: sw::OK }
    }

    pub fn status(sw: u16) -> Self {
        Response {
            data: Vec::new(),
            sw,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }
}

/// Parses a command APDU; `Err` carries the status word to answer with
/// (always 6700: the length fields do not match the bytes received).
pub fn parse(raw: &[u8]) -> Result<Command, u16> {
    if raw.len() < 4 {
        return Err(sw::WRONG_LENGTH);
    }
    let (cla, ins, p1, p2) = (raw[0], raw[1], raw[2], raw[3]);
    let body = &raw[4..];
    let (data, le) = parse_body(body).ok_or(sw::WRONG_LENGTH)?;
    Ok(Command {
        cla,
        ins,
        p1,
        p2,
        data: data.to_vec(),
        le,
    })
}

/// Splits the part after the header into (data, Le) following the four
/// ISO cases, short or extended.
fn parse_body(body: &[u8]) -> Option<(&[u8], Option<usize>)> {
    let short_le = |b: u8| if b == 0 { 256 } else { b as usize };
    let ext_le = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
        0 => 65536,
        n => n as usize,
    };
    match body.len() {
        0 => Some((&[], None)),
        1 => Some((&[], Some(short_le(body[0])))),
        _ if body[0] != 0 => {
            let lc = body[0] as usize;
            let rest = &body[1..];
            if rest.len() == lc {
                Some((rest, None))
            } else if rest.len() == lc + 1 {
                Some((&rest[..lc], Some(short_le(rest[lc]))))
            } else {
                None
            }
        }
        3 => Some((&[], Some(ext_le(body[1], body[2])))),
        n if n > 3 => {
            let lc = u16::from_be_bytes([body[1], body[2]]) as usize;
            let rest = &body[3..];
            if lc == 0 {
                None
            } else if rest.len() == lc {
                Some((rest, None))
            } else if rest.len() == lc + 2 {
                Some((&rest[..lc], Some(ext_le(rest[lc], rest[lc + 1]))))
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        let c = parse(&[0, 0xA4, 4, 0]).unwrap();
        assert!(c.data.is_empty() && c.le.is_none());
        let c = parse(&[0, 0x84, 0, 0, 0]).unwrap();
        assert_eq!(c.le, Some(256));
        let c = parse(&[0, 0xA4, 4, 0, 2, 1, 2]).unwrap();
        assert_eq!((c.data.as_slice(), c.le), (&[1u8, 2][..], None));
        let c = parse(&[0, 0xA4, 4, 0, 2, 1, 2, 0x10]).unwrap();
        assert_eq!(c.le, Some(16));
        let c = parse(&[0, 0x84, 0, 0, 0, 0x01, 0x00]).unwrap();
        assert_eq!(c.le, Some(256));
        let c = parse(&[0, 0x2B, 0, 0, 0, 0, 2, 9, 9]).unwrap();
        assert_eq!(c.data, vec![9, 9]);
        let c = parse(&[0, 0x2B, 0, 0, 0, 0, 2, 9, 9, 0, 0]).unwrap();
        assert_eq!(c.le, Some(65536));
    }

    #[test]
    fn bad_lengths() {
        assert_eq!(parse(&[0, 0xA4, 4]), Err(sw::WRONG_LENGTH));
        assert_eq!(parse(&[0, 0xA4, 4, 0, 3, 1]), Err(sw::WRONG_LENGTH));
        assert_eq!(parse(&[0, 0xA4, 4, 0, 0, 0]), Err(sw::WRONG_LENGTH));
        assert_eq!(parse(&[0, 0xA4, 4, 0, 0, 0, 0, 1]), Err(sw::WRONG_LENGTH));
        assert_eq!(parse(&[0, 0xA4, 4, 0, 1, 1, 1, 1]), Err(sw::WRONG_LENGTH));
    }
}
