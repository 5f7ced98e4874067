//! One connection per card and process, opened on first use, with the card's public keys
//! and certificates cached for the life of the process.
//!
//! - Threads: each card has one mutex; an operation holds it for its whole APDU exchange (and
//!   the applet wraps the exchange in a PC/SC transaction, so other processes wait too).
//! - fork: a PC/SC context does not survive fork. A child notices the pid change on its first
//!   operation and forgets (never uses, never closes) the parent's connection, then opens its
//!   own. The caches stay valid: they describe the same card.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::config;
use crate::iotsafe::objects::{ObjectKind, FUNCTION_SIGN};
use crate::iotsafe::{Applet, Error, HashAlg, ObjectInfo, ObjectRef, PublicKey, Result, Target};

/// Opens a new session with the applet: [`Target::connect`] for the provider, a scripted
/// card in unit tests.
pub type Connector = Box<dyn Fn() -> Result<Applet> + Send + Sync>;

pub struct Card {
    connector: Connector,
    state: Mutex<State>,
    /// The current process (a field so that tests can play a fork).
    process_id: fn() -> u32,
    /// The pause before each retry on a new connection.
    retry_pause: Duration,
}

#[derive(Default)]
struct State {
    pid: u32,
    applet: Option<Applet>,
    public_keys: HashMap<ObjectRef, PublicKey>,
    files: HashMap<ObjectRef, Vec<u8>>,
    objects: Option<Vec<ObjectInfo>>,
}

/// Retries of an operation whose connection failed.
const RETRIES: usize = 3;
/// A card just (re-)inserted may refuse its first commands for a moment.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

static CARDS: Mutex<Vec<(String, Arc<Card>)>> = Mutex::new(Vec::new());

/// The card the target reaches (shared by every key on it). No I/O.
pub fn card_for(target: &Target) -> Arc<Card> {
    let identity = target.card_identity();
    let mut cards = CARDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, card)) = cards.iter().find(|(id, _)| *id == identity) {
        return card.clone();
    }
    let target = target.clone();
    let card = Arc::new(Card::new(Box::new(move || {
        match &target.modem {
            Some(modem) => config::debug(format_args!(
                "connecting to the applet behind modem {modem}"
            )),
            None => config::debug(format_args!(
                "connecting to the applet (reader filter {:?})",
                target.reader
            )),
        }
        target.connect()
    })));
    cards.push((identity, card.clone()));
    card
}

impl Card {
    /// A card reached through `connector`, which is called on first use and after a lost
    /// connection.
    pub fn new(connector: Connector) -> Card {
        Card {
            connector,
            state: Mutex::new(State::default()),
            process_id: std::process::id,
            retry_pause: RETRY_PAUSE,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let pid = (self.process_id)();
        if state.pid != pid {
            if let Some(inherited) = state.applet.take() {
                // The parent's PC/SC handles belong to the parent: closing them from here
                // would tear down its channel. Leak them instead.
                std::mem::forget(inherited);
                config::debug(format_args!(
                    "new process: the card is reconnected on first use"
                ));
            }
            state.pid = pid;
        }
        state
    }

    /// Runs `op` on the applet, connecting first when needed. When the connection fails
    /// (card pulled and re-inserted, daemon restarted), it is dropped and `op` runs once more
    /// on a new one.
    fn with<R>(&self, op: impl FnMut(&mut Applet) -> Result<R>) -> Result<R> {
        let mut state = self.lock();
        self.with_locked(&mut state, op)
    }

    fn with_locked<R>(
        &self,
        state: &mut State,
        mut op: impl FnMut(&mut Applet) -> Result<R>,
    ) -> Result<R> {
        let had_connection = state.applet.is_some();
        let mut result = self.attempt(state, &mut op);
        // A card just (re-)inserted may refuse its first commands for a moment: a few
        // retries on a new connection, a pause apart, then the error stands.
        for _ in 0..RETRIES {
            match &result {
                Err(e)
                    if e.is_transport_failure()
                        || had_connection && matches!(e, Error::NoApplet(_)) =>
                {
                    config::debug(format_args!("{e}: reconnecting"))
                }
                _ => break,
            }
            std::thread::sleep(self.retry_pause);
            result = self.attempt(state, &mut op);
        }
        result
    }

    fn attempt<R>(
        &self,
        state: &mut State,
        op: &mut impl FnMut(&mut Applet) -> Result<R>,
    ) -> Result<R> {
        if state.applet.is_none() {
            state.applet = Some((self.connector)()?);
        }
        let applet = state.applet.as_mut().expect("connected above");
        let result = op(applet);
        if result.as_ref().is_err_and(Error::is_transport_failure) {
            state.applet = None;
        }
        result
    }

    /// A public key's curve and point; read once per process.
    pub fn public_key(&self, key: &ObjectRef) -> Result<PublicKey> {
        let mut state = self.lock();
        if let Some(public) = state.public_keys.get(key) {
            return Ok(public.clone());
        }
        let public = self.with_locked(&mut state, |a| a.public_key(key))?;
        state.public_keys.insert(key.clone(), public.clone());
        Ok(public)
    }

    /// A file's content (the certificate); read once per process.
    pub fn file(&self, file: &ObjectRef) -> Result<Vec<u8>> {
        let mut state = self.lock();
        if let Some(content) = state.files.get(file) {
            return Ok(content.clone());
        }
        let content = self.with_locked(&mut state, |a| a.read_file(file))?;
        state.files.insert(file.clone(), content.clone());
        Ok(content)
    }

    /// The applet's objects; listed once per process.
    pub fn objects(&self) -> Result<Vec<ObjectInfo>> {
        let mut state = self.lock();
        if let Some(objects) = &state.objects {
            return Ok(objects.clone());
        }
        let objects = self.with_locked(&mut state, |a| a.objects())?;
        state.objects = Some(objects.clone());
        Ok(objects)
    }

    /// The first private key that can sign.
    pub fn default_key(&self) -> Result<ObjectRef> {
        self.objects()?
            .iter()
            .find(|o| o.kind == ObjectKind::PrivateKey && o.can(FUNCTION_SIGN))
            .map(ObjectInfo::reference)
            .ok_or_else(|| Error::NotFound {
                what: "a private key that can sign".into(),
                sw: 0x6A82,
            })
    }

    /// The first certificate file (usage 02), or the first file.
    pub fn default_cert(&self) -> Result<ObjectRef> {
        let objects = self.objects()?;
        let files: Vec<&ObjectInfo> = objects
            .iter()
            .filter(|o| o.kind == ObjectKind::File)
            .collect();
        files
            .iter()
            .find(|o| o.usage == Some(0x02))
            .or(files.first())
            .map(|o| o.reference())
            .ok_or_else(|| Error::NotFound {
                what: "a certificate file".into(),
                sw: 0x6A82,
            })
    }

    /// ECDSA over a host-computed digest: 2 APDUs in steady state.
    pub fn sign_digest(&self, key: &ObjectRef, hash: HashAlg, digest: &[u8]) -> Result<Vec<u8>> {
        self.with(|a| a.sign_digest(key, hash, digest))
    }

    /// ECDH on the card with the peer's point put into `slot`.
    pub fn compute_dh(&self, key: &ObjectRef, slot: &ObjectRef, peer: &[u8]) -> Result<Vec<u8>> {
        self.with(|a| a.compute_dh(key, slot, peer))
    }
}
