//! The network side: the runtime thread that drives the sockets, the handles on it, and the
//! look-up itself (ask, classify, prove).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverOpts};
use hickory_resolver::net::dnssec::DnssecDnsHandle;
use hickory_resolver::net::runtime::{RuntimeProvider, TokioRuntimeProvider};
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::net::xfer::{DnsExchange, DnsHandle, FirstAnswer};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::TrustAnchors;
use hickory_resolver::proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Query, ResponseCode,
};
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use super::super::proof::{self, classify, Unproven};
use super::super::wire::{Wire, WireState};
use super::anchor::fetch_anchors;
use super::cache::Clock;
use super::{config_err, Answer, Proof, ResolveError, ResolverConfig, Validation};

pub(super) type Pool = NameServerPool<TokioRuntimeProvider>;

#[derive(Clone)]
enum Stack {
    Validating(DnssecDnsHandle<Wire<Pool>>),
    /// Trusting the AD bit: queries go over plain UDP, whose responses reach us whole (the
    /// pool turns a negative response into an error without its header, and so without its AD
    /// bit); a truncated response is asked again over a TCP connection of its own, whole too.
    AdBit {
        udp: Wire<DnsExchange<TokioRuntimeProvider>>,
        tcp: TcpRetry,
    },
}

/// The TCP retry of a truncated UDP answer in AD-bit mode: one connection per retry (rare),
/// made on whatever runtime runs the look-up, and counted like every other query.
#[derive(Clone)]
struct TcpRetry {
    server: SocketAddr,
    timeout: Duration,
    wire: Arc<WireState>,
}

impl TcpRetry {
    async fn send(&self, request: DnsRequest) -> Result<DnsResponse, NetError> {
        type Tcp = <TokioRuntimeProvider as RuntimeProvider>::Tcp;
        // The connection's task lives in the provider's task set, which ends with the last
        // clone of the provider: this one is kept until the answer is in.
        let provider = TokioRuntimeProvider::new();
        let exchange = TcpClientStream::<Tcp>::exchange(
            self.server,
            None,
            self.timeout,
            None,
            provider.clone(),
        )
        .await?;
        let response = Wire::new(exchange, self.wire.clone())
            .send(request)
            .first_answer()
            .await;
        drop(provider);
        response
    }
}

/// What talks to the network: the runtime whose thread drives the sockets, and the handles that
/// use them. Owned by one process: a child made by `fork()` has a copy of this memory but not the
/// runtime's thread, and shares the sockets and the event-polling instance with its parent, so it
/// builds its own (see [`super::Resolver`]).
pub(super) struct Net {
    /// The process that built it.
    pub(super) pid: u32,
    runtime: Arc<DnsRuntime>,
    stack: Stack,
    /// The query counter and chain-of-trust cache under `stack`.
    pub(super) wire: Arc<WireState>,
}

impl Net {
    /// A runtime and connections to the configured server, with the trust anchors fetched as
    /// configured (none when trusting the AD bit).
    pub(super) fn connect(
        config: &ResolverConfig,
        clock: &Arc<dyn Clock>,
    ) -> Result<(Self, Arc<TrustAnchors>), ResolveError> {
        let runtime = Arc::new(DnsRuntime::start()?);
        let wire = WireState::new(config.cache_entries, config.max_ttl, clock.clone());
        let anchors = match &config.validation {
            Validation::TrustAdBit => Arc::new(TrustAnchors::empty()),
            Validation::TrustAnchor(anchor) => {
                let plain = Wire::new(runtime.within(|| pool(config))?, wire.clone());
                let anchor = anchor.clone();
                let fetched = runtime
                    .run(config.lookup_timeout, async move {
                        fetch_anchors(&anchor, &plain).await
                    })
                    .map_err(|why| config_err(format!("trust anchor: {why}")))?;
                Arc::new(fetched?)
            }
        };
        let net = Self::with_runtime(config, runtime, wire, &anchors)?;
        Ok((net, anchors))
    }

    /// A new runtime and connections validating from `anchors` (in a forked child).
    pub(super) fn reconnect(
        config: &ResolverConfig,
        clock: &Arc<dyn Clock>,
        anchors: &Arc<TrustAnchors>,
    ) -> Result<Self, ResolveError> {
        let runtime = Arc::new(DnsRuntime::start()?);
        let wire = WireState::new(config.cache_entries, config.max_ttl, clock.clone());
        Self::with_runtime(config, runtime, wire, anchors)
    }

    fn with_runtime(
        config: &ResolverConfig,
        runtime: Arc<DnsRuntime>,
        wire: Arc<WireState>,
        anchors: &Arc<TrustAnchors>,
    ) -> Result<Self, ResolveError> {
        let stack = runtime.within(|| stack(config, &wire, anchors))?;
        Ok(Net {
            pid: std::process::id(),
            runtime,
            stack,
            wire,
        })
    }

    /// The same connections with an empty validation cache (`None` when trusting the AD bit:
    /// nothing to forget there but the wire's cache).
    pub(super) fn with_fresh_validator(&self, anchors: &Arc<TrustAnchors>) -> Option<Self> {
        let Stack::Validating(handle) = &self.stack else {
            return None;
        };
        let fresh = DnssecDnsHandle::with_trust_anchor(handle.inner().clone(), anchors.clone());
        Some(Net {
            pid: self.pid,
            runtime: self.runtime.clone(),
            stack: Stack::Validating(fresh),
            wire: self.wire.clone(),
        })
    }

    /// Asks for `name`/`rtype` and classifies the answer, within `limit`. Callable from any
    /// thread, one inside another async runtime too: the look-up runs on this runtime's thread.
    pub(super) fn fetch(
        &self,
        name: Name,
        rtype: RecordType,
        limit: Duration,
    ) -> Result<Answer, String> {
        let stack = self.stack.clone();
        self.runtime.run(
            limit,
            async move { ask_and_prove(&stack, name, rtype).await },
        )?
    }
}

/// One small runtime thread for the DNS I/O, which look-ups hand their work to.
struct DnsRuntime(Option<tokio::runtime::Runtime>);

/// How long past a task's own time-out its caller still waits for the task to report it.
const REPORT_GRACE: Duration = Duration::from_millis(200);

impl DnsRuntime {
    fn start() -> Result<Self, ResolveError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dane-dns")
            .enable_all()
            .build()
            .map(|runtime| Self(Some(runtime)))
            .map_err(|e| config_err(format!("cannot start the DNS runtime: {e}")))
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }

    /// Runs `make` with this runtime as the current one (for constructors that spawn their
    /// background tasks on it). Nests inside another runtime, unlike `block_on`.
    fn within<T>(&self, make: impl FnOnce() -> T) -> T {
        let _entered = self.runtime().enter();
        make()
    }

    /// Runs `future` on the runtime's thread and waits for its result at most `limit`. The
    /// calling thread only waits on a channel, so it may be any thread, one that is driving
    /// another runtime's tasks too (where `block_on` panics). A task that panics or is dropped
    /// closes the channel: an error, at once.
    fn run<T: Send + 'static>(
        &self,
        limit: Duration,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = self.runtime().spawn(async move {
            let _ = tx.send(tokio::time::timeout(limit, future).await);
        });
        let too_late = || format!("no answer within {limit:?}");
        match rx.recv_timeout(limit + REPORT_GRACE) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_elapsed)) => Err(too_late()),
            Err(RecvTimeoutError::Timeout) => {
                task.abort();
                Err(too_late())
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err("the look-up task ended without a result (it panicked)".into())
            }
        }
    }
}

/// Dropping a runtime blocks until its thread is done, which panics on a thread that drives
/// another runtime's tasks (the last user of a resolver may be one): there it is shut down
/// without waiting.
impl Drop for DnsRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            }
        }
    }
}

/// New connections to the configured server on the current runtime, validating from `anchors`
/// (or trusting the AD bit, as configured).
fn stack(
    config: &ResolverConfig,
    wire: &Arc<WireState>,
    anchors: &Arc<TrustAnchors>,
) -> Result<Stack, ResolveError> {
    Ok(match &config.validation {
        Validation::TrustAdBit => {
            let server = config.server;
            let timeout = config.query_timeout;
            // The exchange spawns its background task on the current runtime.
            let udp = UdpClientStream::builder(server, TokioRuntimeProvider::new())
                .with_timeout(Some(timeout))
                .exchange();
            Stack::AdBit {
                udp: Wire::new(udp, wire.clone()),
                tcp: TcpRetry {
                    server,
                    timeout,
                    wire: wire.clone(),
                },
            }
        }
        Validation::TrustAnchor(_) => {
            let pool = Wire::new(pool(config)?, wire.clone());
            Stack::Validating(DnssecDnsHandle::with_trust_anchor(pool, anchors.clone()))
        }
    })
}

fn pool(config: &ResolverConfig) -> Result<Pool, ResolveError> {
    let mut opts = ResolverOpts::default();
    opts.timeout = config.query_timeout;
    opts.attempts = 2;
    opts.edns0 = true;
    opts.cache_size = 0;
    opts.try_tcp_on_error = true;
    let tls = TlsConfig::new().map_err(|e| config_err(format!("{e}")))?;
    let cx = Arc::new(PoolContext::new(opts, tls));
    let mut server = NameServerConfig::udp_and_tcp(config.server.ip());
    for conn in &mut server.connections {
        conn.port = config.server.port();
    }
    Ok(NameServerPool::from_config(
        [server],
        cx,
        TokioRuntimeProvider::new(),
    ))
}

pub(super) fn request_options() -> DnsRequestOptions {
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_set_dnssec_ok = true;
    options.recursion_desired = true;
    options
}

async fn ask(stack: &Stack, name: Name, rtype: RecordType) -> Result<DnsResponse, NetError> {
    let query = Query::query(name, rtype);
    match stack {
        Stack::Validating(handle) => handle.lookup(query, request_options()).first_answer().await,
        Stack::AdBit { udp, tcp } => {
            let mut request = DnsRequest::from_query(query, request_options());
            request.metadata.authentic_data = true;
            let response = udp.send(request.clone()).first_answer().await?;
            if !response.metadata.truncation {
                return answer_or_denial(response);
            }
            // The TCP answer passes the same filter: a SERVFAIL there is just as much a
            // failure, never a denial without AD bit ("insecure").
            let response = tcp.send(request).await?;
            if response.metadata.truncation {
                return Err(NetError::from("the answer is truncated even over TCP"));
            }
            answer_or_denial(response)
        }
    }
}

/// In AD-bit mode, only answers and denials (NOERROR, NXDOMAIN) carry a verdict in their AD bit;
/// SERVFAIL (what a validating resolver says for bogus data) and every other code is a failure.
fn answer_or_denial(response: DnsResponse) -> Result<DnsResponse, NetError> {
    match response.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(response),
        code => Err(NetError::Dns(DnsError::ResponseCode(code))),
    }
}

/// Asks and classifies; with in-process validation, an answer hickory calls insecure is then
/// proven insecure or found bogus (the proof walk shares the look-up's time limit).
async fn ask_and_prove(stack: &Stack, name: Name, rtype: RecordType) -> Result<Answer, String> {
    let result = ask(stack, name.clone(), rtype).await;
    match stack {
        Stack::AdBit { .. } => classify(&name, rtype, result, true),
        Stack::Validating(validator) => {
            let answer = classify(&name, rtype, result, false)?;
            if answer.proof != Proof::Insecure {
                return Ok(answer);
            }
            match proof::prove_insecure(validator, request_options(), &name, rtype).await {
                Ok(how) => Ok(Answer {
                    why: Some(format!("proven: {how}")),
                    ..answer
                }),
                Err(Unproven::Bogus(why)) => Ok(Answer {
                    proof: Proof::Bogus,
                    why: Some(why),
                    ..answer
                }),
                Err(Unproven::Indeterminate(why)) => Err(format!(
                    "the answer is unsigned and its proof of insecurity could not be fetched: {why}"
                )),
            }
        }
    }
}
