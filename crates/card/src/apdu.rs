//! Command and response APDUs (ISO 7816-4), short and extended lengths, and the two transport-
//! level repairs every host must make: `61xx` (fetch the rest with GET RESPONSE) and `6Cxx`
//! (resend with the length the card asked for).

use super::error::{Error, Result, StatusWord};

/// Instruction byte of GET RESPONSE.
const INS_GET_RESPONSE: u8 = 0xC0;
/// A card that keeps answering 61xx forever must not hang the host.
const MAX_GET_RESPONSE_ROUNDS: usize = 64;
/// Most data one exchange collects (an extended-length response, or a GET RESPONSE chain):
/// no answer of the applet comes near it, and a card's chain cannot grow the host's memory.
pub const MAX_RESPONSE_DATA: usize = 65536;

/// A command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// Expected response length; `Some(256)` is encoded as `00` in a short APDU.
    pub le: Option<usize>,
}

impl Command {
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        }
    }

    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    pub fn le(mut self, le: usize) -> Self {
        self.le = Some(le);
        self
    }

    /// Encodes the APDU, choosing short lengths when they suffice and extended ones otherwise.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.cla, self.ins, self.p1, self.p2];
        let extended = self.data.len() > 255 || self.le.is_some_and(|le| le > 256);
        if extended {
            self.encode_extended_body(&mut out);
        } else {
            if !self.data.is_empty() {
                out.push(self.data.len() as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = self.le {
                out.push(if le == 256 { 0 } else { le as u8 });
            }
        }
        out
    }

    fn encode_extended_body(&self, out: &mut Vec<u8>) {
        out.push(0);
        if !self.data.is_empty() {
            out.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            let le = if le >= 65536 { 0 } else { le as u16 };
            out.extend_from_slice(&le.to_be_bytes());
        }
    }
}

/// A response APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: StatusWord,
}

impl Response {
    /// Splits raw response bytes into data and status word.
    pub fn parse(what: &str, raw: &[u8]) -> Result<Self> {
        if raw.len() < 2 {
            return Err(Error::malformed(
                what,
                format!(
                    "{} byte(s) received, a response needs at least the status word",
                    raw.len()
                ),
            ));
        }
        let (data, sw) = raw.split_at(raw.len() - 2);
        Ok(Response {
            data: data.to_vec(),
            sw: u16::from_be_bytes([sw[0], sw[1]]),
        })
    }

    pub fn is_ok(&self) -> bool {
        self.sw == 0x9000
    }

    /// The data of a successful response, or the error that names `what` and the status word.
    pub fn into_ok(self, what: impl FnOnce() -> String) -> Result<Vec<u8>> {
        if self.is_ok() {
            Ok(self.data)
        } else {
            Err(Error::from_status(what(), self.sw))
        }
    }
}

/// Sends `command` through `transmit` and repairs `6Cxx` and `61xx` answers, so callers see one
/// complete response. GET RESPONSE carries the command's class byte (and so its channel).
pub fn exchange(
    what: &str,
    command: &Command,
    transmit: &mut dyn FnMut(&[u8]) -> Result<Vec<u8>>,
) -> Result<Response> {
    let mut response = Response::parse(what, &transmit(&command.encode())?)?;
    if response.sw >> 8 == 0x6C {
        let resend = command.clone().le(le_from_sw2(response.sw));
        response = Response::parse(what, &transmit(&resend.encode())?)?;
    }
    let mut data = std::mem::take(&mut response.data);
    let mut rounds = 0;
    while response.sw >> 8 == 0x61 {
        rounds += 1;
        if rounds > MAX_GET_RESPONSE_ROUNDS {
            return Err(Error::malformed(
                what,
                "the card never stops announcing more data (61xx)",
            ));
        }
        let get = Command::new(command.cla, INS_GET_RESPONSE, 0, 0).le(le_from_sw2(response.sw));
        response = Response::parse(what, &transmit(&get.encode())?)?;
        data.append(&mut response.data);
        if data.len() > MAX_RESPONSE_DATA {
            return Err(Error::malformed(
                what,
                format!("more than {MAX_RESPONSE_DATA} bytes of response data (61xx chain)"),
            ));
        }
    }
    Ok(Response {
        data,
        sw: response.sw,
    })
}

fn le_from_sw2(sw: StatusWord) -> usize {
    match sw & 0xFF {
        0 => 256,
        n => usize::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_case_encodings() {
        assert_eq!(
            Command::new(0x00, 0x70, 0, 0).le(1).encode(),
            [0x00, 0x70, 0, 0, 0x01]
        );
        assert_eq!(
            Command::new(0x81, 0x84, 0, 0).le(256).encode(),
            [0x81, 0x84, 0, 0, 0x00]
        );
        assert_eq!(
            Command::new(0x01, 0xA4, 4, 0).data([0xA0, 0x00]).encode(),
            [0x01, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x00]
        );
        assert_eq!(
            Command::new(0x01, 0xB0, 1, 0)
                .data([0x83, 1, 2])
                .le(256)
                .encode(),
            [0x01, 0xB0, 0x01, 0x00, 0x03, 0x83, 0x01, 0x02, 0x00]
        );
    }

    #[test]
    fn extended_lengths_when_data_exceeds_255() {
        let apdu = Command::new(0x01, 0x2B, 0x80, 0x01)
            .data(vec![7u8; 300])
            .le(256)
            .encode();
        assert_eq!(&apdu[..7], &[0x01, 0x2B, 0x80, 0x01, 0x00, 0x01, 0x2C]);
        assert_eq!(apdu.len(), 7 + 300 + 2);
        assert_eq!(&apdu[307..], &[0x01, 0x00]);
        let apdu = Command::new(0x00, 0x84, 0, 0).le(1000).encode();
        assert_eq!(apdu, [0x00, 0x84, 0, 0, 0x00, 0x03, 0xE8]);
    }

    #[test]
    fn response_needs_a_status_word() {
        let err = Response::parse("SELECT", &[0x90]).unwrap_err();
        assert!(
            err.to_string().contains("at least the status word"),
            "{err}"
        );
        let ok = Response::parse("SELECT", &[0x01, 0x90, 0x00]).unwrap();
        assert_eq!(
            ok,
            Response {
                data: vec![1],
                sw: 0x9000
            }
        );
    }

    #[test]
    fn get_response_chain_is_followed_with_the_same_class() {
        let mut sent = Vec::new();
        let mut answers = vec![
            vec![0x61, 0x02],
            vec![0xAA, 0xBB, 0x61, 0x01],
            vec![0xCC, 0x90, 0x00],
        ];
        answers.reverse();
        let mut transmit = |apdu: &[u8]| {
            sent.push(apdu.to_vec());
            Ok(answers.pop().unwrap())
        };
        let command = Command::new(0x81, 0xB9, 0, 0).data([0x84, 0x01, 0x01]);
        let r = exchange("GENERATE KEY PAIR", &command, &mut transmit).unwrap();
        assert_eq!(
            r,
            Response {
                data: vec![0xAA, 0xBB, 0xCC],
                sw: 0x9000
            }
        );
        assert_eq!(sent[1], [0x81, 0xC0, 0, 0, 0x02]);
        assert_eq!(sent[2], [0x81, 0xC0, 0, 0, 0x01]);
    }

    #[test]
    fn wrong_le_is_resent_with_the_cards_length() {
        let mut sent = Vec::new();
        let mut answers = vec![vec![0x6C, 0x10], [vec![0u8; 16], vec![0x90, 0x00]].concat()];
        answers.reverse();
        let mut transmit = |apdu: &[u8]| {
            sent.push(apdu.to_vec());
            Ok(answers.pop().unwrap())
        };
        let r = exchange(
            "GET RANDOM",
            &Command::new(0x01, 0x84, 0, 0).le(256),
            &mut transmit,
        )
        .unwrap();
        assert_eq!(r.data.len(), 16);
        assert_eq!(sent[1], [0x01, 0x84, 0, 0, 0x10]);
    }

    #[test]
    fn endless_61xx_is_an_error_not_a_hang() {
        let mut transmit = |_: &[u8]| Ok(vec![0x61, 0x01]);
        let err = exchange("x", &Command::new(0, 0xCA, 0, 0), &mut transmit).unwrap_err();
        assert!(err.to_string().contains("never stops"), "{err}");
    }

    #[test]
    fn a_response_chain_is_bounded_in_bytes() {
        let mut transmit = |_: &[u8]| Ok([vec![0u8; 5000], vec![0x61, 0x00]].concat());
        let err = exchange("x", &Command::new(0, 0xCA, 0, 0), &mut transmit).unwrap_err();
        assert!(
            err.to_string()
                .contains("more than 65536 bytes of response data"),
            "{err}"
        );
    }

    #[test]
    fn a_second_6cxx_is_a_status_not_another_resend() {
        let mut sent = 0;
        let mut transmit = |_: &[u8]| {
            sent += 1;
            Ok(vec![0x6C, 0x10])
        };
        let r = exchange("x", &Command::new(0, 0x84, 0, 0).le(8), &mut transmit).unwrap();
        assert_eq!(r.sw, 0x6C10);
        assert_eq!(sent, 2, "one resend only");
    }
}
