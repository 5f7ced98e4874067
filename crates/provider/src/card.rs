//! One connection per card and process, opened on first use, with the card's public keys
//! and certificates cached for the life of the process.
//!
//! - Threads: each card has one mutex; an operation holds it for its whole APDU exchange (and
//!   the applet wraps the exchange in a PC/SC transaction, so other processes wait too).
//! - The PC/SC transaction is kept across back-to-back operations, and ended by a releaser
//!   thread once the card has been idle for [`HOLD_WHILE_IDLE`]: a burst of signatures costs
//!   two round trips to pcscd each, and another process waiting for the card waits at most
//!   that long (plus its own 100 ms polling) after our last operation. The releaser runs only
//!   while a transaction is kept, owns a weak reference to the card and nothing else, and
//!   takes the card's mutex to release, so it never ends a transaction in the middle of an
//!   operation. A card kept busy without a break is released after one second and left alone
//!   for 110 ms, so that a waiting process gets it (see [`Fairness`]).
//! - fork: a PC/SC context does not survive fork. A child notices the pid change on its first
//!   operation and forgets (never uses, never closes) the parent's connection, then opens its
//!   own (waiting for the parent's releaser to end a kept transaction). The releaser thread is
//!   not inherited: the child starts its own. The caches stay valid: they describe the same
//!   card.
//! - Connections come from a [`Connector`]: the card target's `connect` in the provider, the
//!   scripted card of `iotsafe::testing` in the unit tests at the end of this file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::config;
use iotsafe_card::objects::{ObjectKind, FUNCTION_SIGN};
use iotsafe_card::{Applet, Error, HashAlg, ObjectInfo, ObjectRef, PublicKey, Result, Target};

/// Opens a new session with the applet: [`Target::connect`] for the provider, a scripted
/// card in unit tests.
pub type Connector = Box<dyn Fn() -> Result<Applet> + Send + Sync>;

pub struct Card {
    connector: Connector,
    state: Mutex<State>,
    /// How long the card stays ours after an operation ([`HOLD_WHILE_IDLE`]; zero: released
    /// at the end of each operation).
    hold: Duration,
    /// Handed to the releaser thread.
    this: Weak<Card>,
    /// The current process (a field so that tests can play a fork).
    process_id: fn() -> u32,
    /// The pause before each retry on a new connection.
    retry_pause: Duration,
    /// How long the transaction may be kept without a break.
    fairness: Fairness,
}

/// A card kept busy without a pause (a server signing handshake after handshake) would keep
/// its PC/SC transaction for ever, and another process waiting for the card would never get
/// it: pcsc-lite tells nobody that someone waits, and its waiters poll every 100 ms, so
/// releasing for a moment between two operations almost never lets one in. After `max_hold`
/// of one continuous transaction it is ended, and the next operation waits `pause` (longer than
/// one polling period) before beginning another: a waiter gets the card within `max_hold` plus
/// its polling period, and a card under constant load loses `pause` per `max_hold` (about a
/// tenth of its rate, and only then).
#[derive(Clone, Copy, Debug)]
struct Fairness {
    max_hold: Duration,
    pause: Duration,
}

const FAIRNESS: Fairness = Fairness {
    max_hold: Duration::from_secs(1),
    pause: Duration::from_millis(110),
};

#[derive(Default)]
struct State {
    pid: u32,
    applet: Option<Applet>,
    public_keys: HashMap<ObjectRef, PublicKey>,
    files: HashMap<ObjectRef, Vec<u8>>,
    objects: Option<Vec<ObjectInfo>>,
    /// When the operation that kept the card ended; `None` when nothing is kept.
    kept_since: Option<Instant>,
    /// When the transaction kept now began to be kept; `None` when nothing is kept.
    kept_from: Option<Instant>,
    /// Until when no transaction is begun, after a long one was ended (see [`Fairness`]).
    paused_until: Option<Instant>,
    /// The process whose releaser thread runs, while one does (a child's is not running,
    /// whatever its copy of this says).
    releaser: Option<u32>,
}

/// Retries of an operation whose connection failed.
const RETRIES: usize = 3;
/// A card just (re-)inserted may refuse its first commands for a moment.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long the PC/SC transaction outlives an operation. Longer keeps more bursts in one
/// transaction (each new one costs a SELECT to confirm our channel); shorter lets other
/// processes in sooner, though pcsc-lite's waiters poll every 100 ms anyway. Back-to-back TLS
/// handshakes sign a few milliseconds apart, 10 ms and more on a loaded machine.
pub const HOLD_WHILE_IDLE: Duration = Duration::from_millis(25);

static CARDS: Mutex<Vec<(String, Arc<Card>)>> = Mutex::new(Vec::new());

/// The card the target reaches (shared by every key on it, whatever reader filter names it).
/// No card I/O: at most one query to pcscd for its readers' names.
pub fn card_for(target: &Target) -> Arc<Card> {
    fork_guard::install();
    let identity = target.resolved_card_identity();
    let mut cards = CARDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, card)) = cards.iter().find(|(id, _)| *id == identity) {
        return card.clone();
    }
    let target = target.clone();
    let card = Card::new(Box::new(move || {
        match &target.modem {
            Some(modem) => config::debug(format_args!(
                "connecting to the applet behind modem {modem}"
            )),
            None => config::debug(format_args!(
                "connecting to the applet (reader filter {:?})",
                target.reader
            )),
        }
        let applet = target.connect()?;
        if let Some(route) = applet.route() {
            config::debug(format_args!("APDUs to {} by {route}", applet.reader()));
        }
        Ok(applet)
    }));
    cards.push((identity, card.clone()));
    card
}

/// Closes every card connection of this process, at the provider's teardown: its logical
/// channel is given back (a modem keeps a channel its host forgot, and has few). A connection
/// inherited from the parent process is the parent's, and is left alone. A card used after
/// this connects anew.
pub fn close_all() {
    let cards = std::mem::take(&mut *CARDS.lock().unwrap_or_else(|e| e.into_inner()));
    for (_, card) in cards {
        card.lock().applet = None;
    }
}

impl Card {
    /// A card reached through `connector`, which is called on first use and after a lost
    /// connection; the card is kept for [`HOLD_WHILE_IDLE`] after each operation.
    pub fn new(connector: Connector) -> Arc<Card> {
        Card::holding(connector, HOLD_WHILE_IDLE)
    }

    /// Like [`Card::new`], kept for `hold` after each operation (zero: not kept).
    pub fn holding(connector: Connector, hold: Duration) -> Arc<Card> {
        Card::build(connector, hold, std::process::id, RETRY_PAUSE)
    }

    fn build(
        connector: Connector,
        hold: Duration,
        process_id: fn() -> u32,
        retry_pause: Duration,
    ) -> Arc<Card> {
        Card::build_fair(connector, hold, process_id, retry_pause, FAIRNESS)
    }

    fn build_fair(
        connector: Connector,
        hold: Duration,
        process_id: fn() -> u32,
        retry_pause: Duration,
        fairness: Fairness,
    ) -> Arc<Card> {
        Arc::new_cyclic(|this| Card {
            connector,
            state: Mutex::new(State::default()),
            hold,
            this: this.clone(),
            process_id,
            retry_pause,
            fairness,
        })
    }

    /// The reader (or modem) of the current connection; `None` while not connected.
    pub fn reader(&self) -> Option<String> {
        let state = self.lock();
        state
            .applet
            .as_ref()
            .map(|applet| applet.reader().to_string())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let pid = (self.process_id)();
        if state.pid != pid {
            if let Some(inherited) = state.applet.take() {
                // The parent's PC/SC handles belong to the parent: closing them from here
                // would tear down its channel. Leak them instead.
                std::mem::forget(inherited);
                state.kept_since = None;
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

    /// After an operation: the transaction it began stays open for [`Card::hold`]; the
    /// releaser (started in this process if it is not running yet) ends it.
    fn keep(&self, state: &mut State) {
        if self.hold.is_zero() || state.applet.is_none() {
            return;
        }
        let now = Instant::now();
        let kept_from = *state.kept_from.get_or_insert(now);
        if now.duration_since(kept_from) >= self.fairness.max_hold {
            release(state);
            state.paused_until = Some(now + self.fairness.pause);
            config::debug(format_args!(
                "the card was kept for {:?} without a break: released for {:?}",
                self.fairness.max_hold, self.fairness.pause
            ));
            return;
        }
        state.kept_since = Some(now);
        if state.releaser != Some(state.pid) {
            state.releaser = Some(state.pid);
            let this = self.this.clone();
            let started = std::thread::Builder::new()
                .name("iotsafe-card-release".into())
                .spawn({
                    let pid = state.pid;
                    move || release_when_idle_guarded(this, pid)
                });
            if started.is_err() {
                // No thread, no keeping: end the transaction now, as each operation did.
                state.releaser = None;
                release(state);
            }
        }
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
        if let Some(until) = state.paused_until.take() {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        if state.applet.is_none() {
            state.applet = Some((self.connector)()?);
        }
        let applet = state.applet.as_mut().expect("connected above");
        applet.keep_between_operations(!self.hold.is_zero());
        let result = op(applet);
        if result.as_ref().is_err_and(Error::is_transport_failure) {
            state.applet = None;
            state.kept_since = None;
            state.kept_from = None;
        } else {
            self.keep(state);
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

/// Ends the kept transaction (the applet stays selected on its channel).
fn release(state: &mut State) {
    state.kept_since = None;
    state.kept_from = None;
    if let Some(applet) = state.applet.as_mut() {
        applet.release();
    }
}

/// The releaser of process `pid`: ends the card's transaction once it has been idle for its
/// hold time, then returns (the next kept operation starts another). Holds nothing while it
/// sleeps; returns early when the card is gone or another process's releaser took over (a
/// thread does not survive fork, but a test may play one).
fn release_when_idle(card: Weak<Card>, pid: u32) {
    let mut wait = match card.upgrade() {
        Some(card) => card.hold,
        None => return,
    };
    loop {
        std::thread::sleep(wait);
        let Some(card) = card.upgrade() else { return };
        let mut state = card.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.releaser != Some(pid) {
            return;
        }
        // One reading of the clock: two could straddle the hold time, and a subtraction that
        // goes negative would end the releaser with the transaction still kept.
        match next_wait(state.kept_since.map(|since| since.elapsed()), card.hold) {
            Some(left) => wait = left,
            None => {
                release(&mut state);
                state.releaser = None;
                return;
            }
        }
    }
}

/// How long the releaser still waits, given how long the card has been idle: None when the
/// transaction is to end now (idle for the hold time, or not kept at all).
fn next_wait(idle: Option<Duration>, hold: Duration) -> Option<Duration> {
    idle.and_then(|idle| hold.checked_sub(idle))
        .filter(|left| !left.is_zero())
}

/// The releaser, whatever happens in it: should it ever panic, the transaction is ended and the
/// card lets the next kept operation start another releaser (a card kept for ever would lock
/// every other process out of it).
fn release_when_idle_guarded(card: Weak<Card>, pid: u32) {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        release_when_idle(card.clone(), pid)
    }));
    if run.is_err() {
        if let Some(card) = card.upgrade() {
            let mut state = card.state.lock().unwrap_or_else(|e| e.into_inner());
            release(&mut state);
            if state.releaser == Some(pid) {
                state.releaser = None;
            }
        }
    }
}

/// No card lock is held by another thread at a `fork()`: the child has only the forking
/// thread, and a lock the releaser (or another thread's operation) held at that moment would
/// stay locked in the child for ever. `pthread_atfork` handlers take every card's lock before
/// the fork (waiting for an operation in progress to end) and release them after it, in the
/// parent and in the child alike.
mod fork_guard {
    use std::cell::RefCell;
    use std::sync::{Arc, MutexGuard, Once};

    use super::{Card, State, CARDS};

    static INSTALL: Once = Once::new();

    type Cards = Vec<(String, Arc<Card>)>;

    /// The locks taken before a fork, by the forking thread (the child's only thread is a
    /// copy of it, with this value). Fields drop in order: the cards' locks, then the cards
    /// they borrow from, then the registry's lock.
    struct Held {
        _states: Vec<MutexGuard<'static, State>>,
        _cards: Vec<Arc<Card>>,
        _registry: MutexGuard<'static, Cards>,
    }

    thread_local! {
        static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
    }

    pub(super) fn install() {
        INSTALL.call_once(|| {
            // SAFETY: plain functions that live as long as the program (the library is
            // linked nodelete). On failure (ENOMEM) a fork is as unguarded as before.
            unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release)) };
        });
    }

    pub(super) unsafe extern "C" fn prepare() {
        let registry = CARDS.lock().unwrap_or_else(|e| e.into_inner());
        let cards: Vec<Arc<Card>> = registry.iter().map(|(_, card)| card.clone()).collect();
        let states = cards
            .iter()
            .map(|card| {
                // SAFETY: `Held::_cards` keeps this card alive, and its guard is dropped first.
                let card: &'static Card = unsafe { &*Arc::as_ptr(card) };
                let mut state = card.state.lock().unwrap_or_else(|e| e.into_inner());
                // No child inherits a kept transaction: a parent that then exits without its
                // teardown (daemon(3)) would leave the card locked for as long as the child
                // lives, for every process, the child included.
                super::release(&mut state);
                state
            })
            .collect();
        let held = Held {
            _states: states,
            _cards: cards,
            _registry: registry,
        };
        // Never panics across the C boundary: a thread without its locals keeps no locks.
        let _ = HELD.try_with(|cell| *cell.borrow_mut() = Some(held));
    }

    pub(super) unsafe extern "C" fn release() {
        let held = HELD
            .try_with(|cell| cell.borrow_mut().take())
            .ok()
            .flatten();
        drop(held);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use iotsafe_card::testing::{Script, Step};
    use iotsafe_card::{AppletConfig, Curve, Target};

    const OPEN_CHANNEL_1: (&str, &str) = ("0070000001", "019000");
    const SELECT_ON_1: (&str, &str) = ("01A4040007A0000005590010", "9000");
    const SIGN_INIT: &str = "012A00010D840101A10103910200019201 04";

    fn sign_update() -> (String, String) {
        (
            format!("012B8001229E20{}", "00".repeat(32)),
            format!("3340{}9000", "22".repeat(64)),
        )
    }

    fn point() -> String {
        format!("04{}", "11".repeat(64))
    }

    thread_local! {
        /// The process id the cards of this thread's test see.
        static PID: Cell<u32> = const { Cell::new(1) };
    }

    fn test_pid() -> u32 {
        PID.with(Cell::get)
    }

    /// A card whose connections are `scripts`, one per connection, in order (each selects
    /// the applet, as `Target::connect` does); a connection beyond them fails as a missing
    /// reader does. Also returns the count of connections made.
    fn card_of(scripts: &[&Script]) -> (Arc<Card>, Arc<AtomicUsize>) {
        let left: Mutex<VecDeque<Script>> = Mutex::new(scripts.iter().copied().cloned().collect());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let connector: Connector = Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let script = left
                .lock()
                .unwrap()
                .pop_front()
                .ok_or_else(|| Error::NoReader("no card left in this test".into()))?;
            let mut applet = Applet::new(Box::new(script), AppletConfig::default());
            applet.select()?;
            Ok(applet)
        });
        let card = Card::build(connector, HOLD_WHILE_IDLE, test_pid, Duration::ZERO);
        (card, connections)
    }

    /// Like [`card_of`] with one connection, kept for `hold` after each operation.
    fn card_holding(script: &Script, hold: Duration) -> Arc<Card> {
        card_holding_fairly(script, hold, FAIRNESS)
    }

    /// [`card_holding`] with the longest continuous hold and its pause of `fairness`.
    fn card_holding_fairly(script: &Script, hold: Duration, fairness: Fairness) -> Arc<Card> {
        let script = script.clone();
        let connector: Connector = Box::new(move || {
            let mut applet = Applet::new(Box::new(script.clone()), AppletConfig::default());
            applet.select()?;
            Ok(applet)
        });
        Card::build_fair(connector, hold, test_pid, Duration::ZERO, fairness)
    }

    fn two_signatures() -> Script {
        let (update, signature) = sign_update();
        Script::new(&[
            OPEN_CHANNEL_1,
            SELECT_ON_1,
            (SIGN_INIT, "9000"),
            (&update, &signature),
            (SIGN_INIT, "9000"),
            (&update, &signature),
        ])
    }

    #[test]
    fn a_fork_while_another_thread_holds_the_card_leaves_the_child_a_usable_card() {
        let target = Target {
            reader: Some("fork guard test".into()),
            ..Target::default()
        };
        let card = card_for(&target);
        let (held, holding) = std::sync::mpsc::channel();
        let holder = {
            let card = card.clone();
            std::thread::spawn(move || {
                let state = card.state.lock().unwrap();
                held.send(()).unwrap();
                // Long enough for the fork below to start while the lock is held.
                std::thread::sleep(Duration::from_millis(200));
                drop(state);
            })
        };
        holding.recv().unwrap();
        // SAFETY: the child only takes the card's lock and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: plain libc calls in the child; alarm ends a child stuck on the lock.
            unsafe {
                libc::alarm(5);
                drop(card.state.lock());
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child made above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        holder.join().unwrap();
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child could not take the card's lock (status {status:#x})"
        );
    }

    #[test]
    fn back_to_back_operations_keep_the_card() {
        let script = two_signatures();
        let card = card_holding(&script, Duration::from_secs(60));
        signs(&card).unwrap();
        signs(&card).unwrap();
        assert_eq!(script.releases(), 0, "kept across both signatures");
    }

    /// Under constant load the transaction is ended after `max_hold` and the next operation
    /// begins another only after `pause`: a process waiting for the card gets it.
    #[test]
    fn a_card_kept_busy_is_released_for_a_pause_after_the_longest_hold() {
        let (update, signature) = sign_update();
        let mut steps = vec![OPEN_CHANNEL_1, SELECT_ON_1];
        for _ in 0..8 {
            steps.extend([(SIGN_INIT, "9000"), (update.as_str(), signature.as_str())]);
        }
        let script = Script::new(&steps);
        let fairness = Fairness {
            max_hold: Duration::from_millis(40),
            pause: Duration::from_millis(100),
        };
        let card = card_holding_fairly(&script, Duration::from_secs(60), fairness);
        // Eight signatures 10 ms apart: a burst longer than the longest hold. The transaction
        // ends within one signature (begun at `previous`); the next one ends no earlier than
        // that plus the pause.
        let started = Instant::now();
        let mut previous = started;
        let mut waited_from = None;
        for _ in 0..8 {
            let before = Instant::now();
            signs(&card).unwrap();
            if Instant::now().duration_since(previous) >= fairness.pause {
                waited_from.get_or_insert(before.duration_since(started));
            }
            previous = before;
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(script.releases() >= 1, "released under constant load");
        let waited_from = waited_from.expect("a signature waited for the pause");
        assert!(
            waited_from >= fairness.max_hold,
            "kept for the longest hold first, paused at {waited_from:?}"
        );
    }

    #[test]
    fn the_releasers_wait_never_goes_below_zero() {
        let hold = Duration::from_millis(25);
        let nanos = Duration::from_nanos(1);
        assert_eq!(next_wait(Some(hold - nanos), hold), Some(nanos));
        assert_eq!(next_wait(Some(hold), hold), None);
        assert_eq!(
            next_wait(Some(hold + nanos), hold),
            None,
            "idle past the hold"
        );
        assert_eq!(next_wait(None, hold), None, "nothing kept");
    }

    /// A fork ends the kept transaction first: a child never inherits one (a daemonising
    /// parent that exits without its teardown would leave the card locked for everyone).
    #[test]
    fn a_fork_ends_the_kept_transaction_first() {
        let script = two_signatures();
        let card = card_holding(&script, Duration::from_secs(60));
        signs(&card).unwrap();
        assert_eq!(script.releases(), 0, "kept");
        CARDS
            .lock()
            .unwrap()
            .push(("fork-test".into(), card.clone()));
        // SAFETY: the handlers as pthread_atfork runs them around a fork, on this thread.
        unsafe {
            fork_guard::prepare();
            fork_guard::release();
        }
        CARDS.lock().unwrap().retain(|(id, _)| id != "fork-test");
        assert_eq!(script.releases(), 1, "released before the fork");
        signs(&card).unwrap();
    }

    #[test]
    fn an_idle_card_is_released_once_by_the_releaser() {
        let script = two_signatures();
        let card = card_holding(&script, Duration::from_millis(5));
        signs(&card).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while script.releases() == 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(script.releases(), 1, "released after the idle time");
        // A later operation is kept again, and released again.
        signs(&card).unwrap();
        while script.releases() == 1 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(script.releases(), 2);
    }

    #[test]
    fn a_card_held_for_no_time_is_released_by_each_operation() {
        let script = two_signatures();
        let card = card_holding(&script, Duration::ZERO);
        signs(&card).unwrap();
        signs(&card).unwrap();
        // The transport ends each transaction with its link: nothing is kept to release.
        assert_eq!(script.releases(), 0);
        assert!(card.lock().kept_since.is_none());
    }

    fn steps(steps: &[(&str, &str)]) -> Vec<Step> {
        steps.iter().map(|(c, a)| Step::apdu(c, a)).collect()
    }

    fn signs(card: &Card) -> Result<Vec<u8>> {
        card.sign_digest(&ObjectRef::Id(vec![1]), HashAlg::Sha256, &[0; 32])
    }

    #[test]
    fn a_public_key_is_read_once_with_its_curve() {
        let read = format!("34454943 8641 {} 9000", point());
        let script = Script::new(&[
            OPEN_CHANNEL_1,
            SELECT_ON_1,
            ("01CBC2000385010100", "850101 4B0123 9000"),
            ("01CD000003850101", &read),
        ]);
        let (card, connections) = card_of(&[&script]);
        let key = ObjectRef::Id(vec![1]);
        let public = card.public_key(&key).unwrap();
        assert_eq!(public.curve, Curve::BrainpoolP256r1);
        assert_eq!(iotsafe_hex::encode(&public.point), point());
        assert_eq!(card.public_key(&key).unwrap(), public, "from the cache");
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn one_object_listing_serves_the_default_key_and_certificate() {
        // A key-agreement key before the signing key; a file of another use before the
        // certificate.
        let list = "C106 840107 610104  C106 840101 610101  C303 830105  C306 830102 210102 9000";
        let script = Script::new(&[OPEN_CHANNEL_1, SELECT_ON_1, ("01CB010000", list)]);
        let (card, _) = card_of(&[&script]);
        assert_eq!(card.default_key().unwrap(), ObjectRef::Id(vec![1]));
        assert_eq!(card.default_cert().unwrap(), ObjectRef::Id(vec![2]));
        assert_eq!(card.objects().unwrap().len(), 4);
    }

    #[test]
    fn a_file_is_read_once() {
        let script = Script::new(&[
            OPEN_CHANNEL_1,
            SELECT_ON_1,
            ("01CBC3000383010200", "830102 200103 9000"),
            ("01B000000383010203", "C0FFEE9000"),
        ]);
        let (card, _) = card_of(&[&script]);
        let cert = ObjectRef::Id(vec![2]);
        assert_eq!(card.file(&cert).unwrap(), [0xC0, 0xFF, 0xEE]);
        assert_eq!(card.file(&cert).unwrap(), [0xC0, 0xFF, 0xEE]);
    }

    #[test]
    fn a_lost_card_is_reconnected_and_the_operation_runs_again() {
        let absent = || Error::CardAbsent {
            reader: "script".into(),
        };
        let mut lost = steps(&[OPEN_CHANNEL_1, SELECT_ON_1]);
        lost.push(Step::apdu_fails(SIGN_INIT, absent()));
        // The applet's own recovery fails too: the card is out of the reader.
        lost.push(Step::Recover(Err(absent())));
        let lost = Script::of(lost);
        let (update, signature) = sign_update();
        let back = Script::new(&[
            OPEN_CHANNEL_1,
            SELECT_ON_1,
            (SIGN_INIT, "9000"),
            (&update, &signature),
        ]);
        let (card, connections) = card_of(&[&lost, &back]);
        signs(&card).unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert!(lost.past_the_end().is_empty(), "{:?}", lost.past_the_end());
    }

    #[test]
    fn a_reset_card_is_selected_again_on_the_same_connection() {
        let mut script = steps(&[OPEN_CHANNEL_1, SELECT_ON_1]);
        script.push(Step::apdu_fails(
            SIGN_INIT,
            Error::CardReset {
                reader: "script".into(),
            },
        ));
        script.push(Step::Recover(Ok(())));
        let (update, signature) = sign_update();
        script.extend(steps(&[
            OPEN_CHANNEL_1,
            SELECT_ON_1,
            (SIGN_INIT, "9000"),
            (&update, &signature),
        ]));
        let script = Script::of(script);
        let (card, connections) = card_of(&[&script]);
        signs(&card).unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_applet_not_yet_selectable_after_reinsertion_is_selected_on_the_next_try() {
        let read = format!("34454943 8641 {} 9000", point());
        // Connected by an earlier operation.
        let mut script = steps(&[
            OPEN_CHANNEL_1,
            SELECT_ON_1,
            ("01CBC2000385010100", "850101 4B0113 9000"),
            ("01CD000003850101", &read),
        ]);
        script.push(Step::apdu_fails(
            SIGN_INIT,
            Error::CardReset {
                reader: "script".into(),
            },
        ));
        script.push(Step::Recover(Ok(())));
        // Just re-inserted: no AID answers yet, and the channel is given back.
        script.extend(steps(&[
            OPEN_CHANNEL_1,
            ("01A4040007A0000005590010", "6A82"),
            ("01A404000FA0000000305 3F1240177010149 5341", "6A82"),
            ("01A4040007A0000002480400", "6A82"),
            ("00708001", "9000"),
        ]));
        let (update, signature) = sign_update();
        script.extend(steps(&[
            OPEN_CHANNEL_1,
            SELECT_ON_1,
            (SIGN_INIT, "9000"),
            (&update, &signature),
        ]));
        let script = Script::of(script);
        let (card, connections) = card_of(&[&script]);
        card.public_key(&ObjectRef::Id(vec![1])).unwrap();
        signs(&card).unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_card_that_stays_away_fails_after_the_retries() {
        let (card, connections) = card_of(&[]);
        let err = signs(&card).unwrap_err();
        assert!(matches!(err, Error::NoReader(_)), "{err}");
        assert_eq!(connections.load(Ordering::SeqCst), 1 + RETRIES);
    }

    #[test]
    fn a_refusal_is_not_retried_and_not_cached() {
        let read = format!("34454943 8641 {} 9000", point());
        let script = Script::new(&[
            OPEN_CHANNEL_1,
            SELECT_ON_1,
            ("01CBC2000385010100", "6982"),
            ("01CD000003850101", "6982"),
            ("01CBC2000385010100", "850101 4B0113 9000"),
            ("01CD000003850101", &read),
        ]);
        let (card, connections) = card_of(&[&script]);
        let key = ObjectRef::Id(vec![1]);
        let err = card.public_key(&key).unwrap_err();
        assert_eq!(err.status_word(), Some(0x6982), "{err}");
        assert_eq!(card.public_key(&key).unwrap().curve, Curve::P256);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_forked_child_connects_anew_and_leaves_the_parents_connection_alone() {
        PID.with(|pid| pid.set(100));
        let read = format!("34454943 8641 {} 9000", point());
        let parent = Script::new(&[
            OPEN_CHANNEL_1,
            SELECT_ON_1,
            ("01CBC2000385010100", "850101 4B0113 9000"),
            ("01CD000003850101", &read),
        ]);
        let (update, signature) = sign_update();
        let child = Script::new(&[
            OPEN_CHANNEL_1,
            SELECT_ON_1,
            (SIGN_INIT, "9000"),
            (&update, &signature),
        ]);
        let (card, connections) = card_of(&[&parent, &child]);
        let key = ObjectRef::Id(vec![1]);
        let public = card.public_key(&key).unwrap();

        PID.with(|pid| pid.set(101));
        // The cache describes the same card: no I/O, no connection.
        assert_eq!(card.public_key(&key).unwrap(), public);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        signs(&card).unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        // The parent's channel was neither used nor closed from the child.
        assert_eq!(parent.remaining(), 0);
        assert!(
            parent.past_the_end().is_empty(),
            "{:?}",
            parent.past_the_end()
        );
    }
}
