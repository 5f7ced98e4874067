//! Another vendor's applet on the same card (`--foreign-aid`): selectable on any channel,
//! it answers 6D00 to every command but SELECT and MANAGE CHANNEL. A channel where another
//! host selected it looks, to the IoT SAFE host that had it before, as a re-purposed channel
//! does on a real card.

use super::{Applet, Channel, Outcome};
use crate::apdu::{Command, Response};

impl Applet {
    /// SELECT of the foreign applet: `None` when `cmd` names another AID.
    pub(super) fn select_foreign(&mut self, ch: usize, cmd: &Command) -> Option<Outcome> {
        if self.cfg.foreign_aid.as_deref() != Some(cmd.data.as_slice()) {
            return None;
        }
        // The IoT SAFE applet is no longer selected here: its commands reach an applet that
        // knows none of them (6D00, as for an unselected channel).
        Some(self.channel(ch).map(|channel| {
            *channel = Channel::default();
            Response::ok(Vec::new())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;
    use crate::hex;
    use crate::state::Store;

    fn sw(applet: &mut Applet, apdu: &str) -> String {
        let response = applet.process(&hex::decode(apdu).unwrap());
        hex::encode(&response[response.len() - 2..])
    }

    #[test]
    fn the_foreign_applet_takes_a_channel_and_refuses_our_commands() {
        let cfg = Config {
            foreign_aid: Some(hex::decode("A000000151000000").unwrap()),
            ..Config::default()
        };
        let mut card = Applet::new(cfg, Store::volatile());
        assert_eq!(sw(&mut card, "0070000001"), "9000");
        assert_eq!(sw(&mut card, "01A4040007A0000005590010"), "9000");
        assert_eq!(sw(&mut card, "01CB00000100"), "9000", "GET DATA on ours");
        assert_eq!(sw(&mut card, "01A4040008A000000151000000"), "9000");
        assert_eq!(
            sw(&mut card, "01CB00000100"),
            "6D00",
            "the foreign applet's answer"
        );
        assert_eq!(
            sw(&mut card, "012A00010D840101A10103910200019201 04"),
            "6D00"
        );
        // Ours again on the same channel.
        assert_eq!(sw(&mut card, "01A4040C07A0000005590010"), "9000");
        assert_eq!(sw(&mut card, "01CB00000100"), "9000");
    }

    #[test]
    fn without_the_option_the_foreign_aid_is_not_found() {
        let mut card = Applet::new(Config::default(), Store::volatile());
        assert_eq!(sw(&mut card, "00A4040008A000000151000000"), "6A82");
    }
}
