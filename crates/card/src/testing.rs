//! Test support: a card that plays a script, for unit tests of this layer and of the layers
//! above it (built for tests, or with the `testing` feature).
//!
//! Each command the host sends must be the next scripted one; the card gives the scripted
//! answer (or failure). Opening a link and recovering the connection succeed unless the script
//! says otherwise at that point. When the last copy of a script goes, every scripted step must
//! have been used: a test cannot pass with the host sending fewer commands than the card
//! expected.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::error::{Error, Result};
use super::transport::{ChannelOpening, Link, Transport};
use iotsafe_hex as hex;

/// One thing the scripted card expects.
#[derive(Debug)]
pub enum Step {
    /// This command (APDU bytes), answered with these bytes (data and status word) or failing.
    Apdu {
        command: Vec<u8>,
        answer: Result<Vec<u8>>,
    },
    /// The next [`Transport::link`] fails (the card went away since the last operation).
    LinkFails(Error),
    /// The next [`Transport::recover`] gives this.
    Recover(Result<()>),
    /// The session asks the transport to open a channel with this AID selected (a modem's
    /// AT+CCHO); the transport answers this. Unscripted, a transport opens none.
    OpenChannel {
        aid: Vec<u8>,
        answer: ChannelOpening,
    },
    /// The session gives back the channel the transport opened.
    CloseChannel(u8),
    /// The next [`Transport::link`] begins a new exclusive period: other hosts may have used
    /// the card since the previous one ([`Link::newly_acquired`]).
    NewPeriod,
}

impl Step {
    /// A command and its answer, both in hex (spaces allowed).
    pub fn apdu(command: &str, answer: &str) -> Step {
        Step::Apdu {
            command: decode(command),
            answer: Ok(decode(answer)),
        }
    }

    /// A command (hex) whose transmission fails.
    pub fn apdu_fails(command: &str, error: Error) -> Step {
        Step::Apdu {
            command: decode(command),
            answer: Err(error),
        }
    }
}

fn decode(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap_or_else(|e| panic!("script step {text:?}: {e}"))
}

/// A scripted card; clones share one script (the transport, its links, the test's handle).
#[derive(Clone)]
pub struct Script(Arc<Played>);

struct Played {
    steps: Mutex<VecDeque<Step>>,
    /// Commands sent after the script ended (an applet closing its channel when dropped).
    past_the_end: Mutex<Vec<Vec<u8>>>,
    /// Calls of [`Transport::release`].
    releases: AtomicUsize,
}

impl Script {
    /// A script of commands and answers, in hex.
    pub fn new(steps: &[(&str, &str)]) -> Self {
        Script::of(steps.iter().map(|(c, a)| Step::apdu(c, a)).collect())
    }

    pub fn of(steps: Vec<Step>) -> Self {
        Script(Arc::new(Played {
            steps: Mutex::new(steps.into()),
            past_the_end: Mutex::new(Vec::new()),
            releases: AtomicUsize::new(0),
        }))
    }

    /// Steps not played yet.
    pub fn remaining(&self) -> usize {
        self.steps().len()
    }

    /// Commands the host sent after the last step, in hex.
    pub fn past_the_end(&self) -> Vec<String> {
        let sent = self
            .0
            .past_the_end
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        sent.iter().map(|c| hex::encode(c)).collect()
    }

    /// How often the host ended an exclusive access kept across operations.
    pub fn releases(&self) -> usize {
        self.0.releases.load(Ordering::SeqCst)
    }

    fn steps(&self) -> MutexGuard<'_, VecDeque<Step>> {
        self.0.steps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Played {
    fn drop(&mut self) {
        let steps = self.steps.get_mut().unwrap_or_else(|e| e.into_inner());
        // A test already failing says why itself; a second panic would abort.
        if !steps.is_empty() && !std::thread::panicking() {
            panic!(
                "the script ended with {} step(s) never played: {:?}",
                steps.len(),
                steps
            );
        }
    }
}

impl Transport for Script {
    fn name(&self) -> &str {
        "script"
    }

    fn link(&mut self) -> Result<Box<dyn Link + '_>> {
        let mut steps = self.steps();
        let newly_acquired = match steps.front() {
            Some(Step::LinkFails(_)) => {
                let Some(Step::LinkFails(error)) = steps.pop_front() else {
                    unreachable!("the front step was just matched");
                };
                return Err(error);
            }
            Some(Step::NewPeriod) => {
                steps.pop_front();
                true
            }
            _ => false,
        };
        drop(steps);
        Ok(Box::new(ScriptLink {
            script: self.clone(),
            newly_acquired,
        }))
    }

    fn release(&mut self) {
        self.0.releases.fetch_add(1, Ordering::SeqCst);
    }

    fn recover(&mut self) -> Result<()> {
        let mut steps = self.steps();
        if let Some(Step::Recover(_)) = steps.front() {
            let Some(Step::Recover(result)) = steps.pop_front() else {
                unreachable!("the front step was just matched");
            };
            return result;
        }
        Ok(())
    }
}

/// One link on the scripted card.
struct ScriptLink {
    script: Script,
    newly_acquired: bool,
}

impl Link for ScriptLink {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        self.script.transmit(command)
    }

    fn newly_acquired(&self) -> bool {
        self.newly_acquired
    }

    fn open_channel(&mut self, aid: &[u8]) -> Result<ChannelOpening> {
        self.script.open_channel(aid)
    }

    fn close_channel(&mut self, channel: u8) {
        self.script.close_channel(channel)
    }
}

impl Link for Script {
    fn open_channel(&mut self, aid: &[u8]) -> Result<ChannelOpening> {
        let mut steps = self.steps();
        if !matches!(steps.front(), Some(Step::OpenChannel { .. })) {
            return Ok(ChannelOpening::NotOffered);
        }
        let Some(Step::OpenChannel {
            aid: expected,
            answer,
        }) = steps.pop_front()
        else {
            unreachable!("the front step was just matched");
        };
        assert_eq!(
            hex::encode(aid),
            hex::encode(&expected),
            "AID of the channel"
        );
        Ok(answer)
    }

    fn close_channel(&mut self, channel: u8) {
        match self.steps().pop_front() {
            Some(Step::CloseChannel(expected)) => assert_eq!(channel, expected, "channel closed"),
            other => panic!("closed channel {channel} where the script expects {other:?}"),
        }
    }

    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        let step = self.steps().pop_front();
        match step {
            Some(Step::Apdu {
                command: expected,
                answer,
            }) => {
                assert_eq!(
                    hex::encode(command),
                    hex::encode(&expected),
                    "command bytes"
                );
                answer
            }
            Some(other) => panic!(
                "sent {} where the script expects {other:?}",
                hex::encode(command)
            ),
            // Past the script's end the card is gone.
            None => {
                let mut sent = self
                    .0
                    .past_the_end
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                sent.push(command.to_vec());
                Err(Error::Transport("the script has ended".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "1 step(s) never played")]
    fn a_step_never_played_fails_the_test() {
        let script = Script::new(&[("00A4040000", "9000")]);
        drop(script.clone());
        assert_eq!(script.remaining(), 1, "copies share the script");
    }

    #[test]
    fn commands_past_the_end_fail_and_are_recorded() {
        let mut script = Script::of(vec![
            Step::LinkFails(Error::Transport("gone".into())),
            Step::apdu("0084000001", "AA9000"),
            Step::Recover(Err(Error::Transport("still gone".into()))),
        ]);
        assert!(script.link().is_err());
        assert_eq!(
            script
                .link()
                .unwrap()
                .transmit(&[0, 0x84, 0, 0, 1])
                .unwrap(),
            [0xAA, 0x90, 0x00]
        );
        assert!(script.recover().is_err());
        // Unscripted, a link and a recovery succeed.
        assert!(script.recover().is_ok());
        assert!(script.link().unwrap().transmit(&[0x01, 0x70]).is_err());
        assert_eq!(script.past_the_end(), ["0170"]);
    }
}
