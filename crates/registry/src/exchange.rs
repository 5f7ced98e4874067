//! One TSIG-signed request to the zone's primary and its verified response, over TCP.
//!
//! The message is signed here with hickory's `TSigner` and the response checked with the
//! verifier it returns, rather than by a `DnsMultiplexer` given the signer: the multiplexer turns
//! every response whose TSIG does not verify into an error without the response, and the
//! responses a server sends to a wrong key are exactly those (NOTAUTH with an unsigned TSIG
//! carrying BADSIG or BADKEY, RFC 8945 §5.3.2). Signing before sending keeps the response, so
//! the refusal can be named. The framing and the encoding are hickory's (`TcpClientStream`,
//! `Message`): no DNS wire code here.
//!
//! TCP rather than UDP: an update and its prerequisites can exceed a UDP datagram, a lost UDP
//! answer would leave it unknown whether the update was applied (to be found out by asking
//! again, with retries and their duplicates to reason about), and a TCP answer comes from the
//! address asked. One connection per request: an operator's command sends one or two.
//!
//! Time-outs: connecting and waiting for the answer get `timeout` each. A connection that fails
//! means nothing was sent; a missing answer to a request sent leaves it unknown whether the
//! server applied it, and the error says so.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::DnsStreamHandle;
use hickory_resolver::proto::op::{Message, ResponseCode, SerialMessage};
use hickory_resolver::proto::rr::TSigner;

use crate::RegistryError;

/// Why an exchange gave no usable response.
pub(crate) enum Failure {
    /// The response's RCODE is not one the caller accepts; its TSIG error, if any; whether the
    /// response was signed with our key.
    Refused(ResponseCode, Option<String>, bool),
    Other(RegistryError),
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Failure::Other(e)
    }
}

/// Sends `message` signed with `signer` at time `now` (seconds since the epoch) to `server` and returns the response once its TSIG is
/// verified. A response with an RCODE not in `accept` is [`Failure::Refused`], whether or not
/// its TSIG verifies (an unsigned refusal is no less a refusal: nothing was changed either way).
pub(crate) fn exchange(
    server: SocketAddr,
    message: Message,
    signer: (&TSigner, u64),
    timeout: Duration,
    accept: &[ResponseCode],
) -> Result<Message, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RegistryError::Local(format!("cannot start an I/O runtime: {e}")))?;
    runtime.block_on(send(server, message, signer, timeout, accept))
}

async fn send(
    server: SocketAddr,
    mut message: Message,
    (signer, now): (&TSigner, u64),
    timeout: Duration,
    accept: &[ResponseCode],
) -> Result<Message, Failure> {
    let no_answer = |why: String| RegistryError::NoAnswer { server, why };
    let local = |why: String| RegistryError::Local(why);
    message.metadata.id = random_id();
    let mut verifier = message
        .finalize(signer, now)
        .map_err(|e| local(format!("cannot sign the request: {e}")))?
        .ok_or_else(|| local("TSIG signing gave no response verifier".into()))?;
    let request = message
        .to_vec()
        .map_err(|e| local(format!("cannot encode the request: {e}")))?;

    let provider = TokioRuntimeProvider::new();
    let (connect, mut outbound) = TcpClientStream::new(server, None, Some(timeout), provider);
    let mut stream = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(no_answer(format!("cannot connect: {e}; nothing was sent")).into())
        }
        Err(_) => {
            let why = format!(
                "cannot connect within {} s; nothing was sent",
                secs(timeout)
            );
            return Err(no_answer(why).into());
        }
    };
    outbound
        .send(SerialMessage::new(request, server))
        .map_err(|e| no_answer(format!("cannot send: {e}")))?;
    // A request held back on the way may still arrive: the server takes it within the TSIG
    // fudge of its signing, unless another change moved the zone's SOA (its prerequisite).
    let unknown = format!(
        "; whether the server applied the request is unknown (see `iotsafe registry show`): \
         one held back on the way may still apply within {} s, unless another change to the \
         zone lands first",
        crate::key::FUDGE_SECONDS
    );
    let bytes = match tokio::time::timeout(timeout, stream.next()).await {
        Ok(Some(Ok(reply))) => reply.into_parts().0,
        Ok(Some(Err(e))) => {
            return Err(no_answer(format!("connection failed: {e}{unknown}")).into())
        }
        Ok(None) => {
            return Err(no_answer(format!("connection closed without an answer{unknown}")).into())
        }
        Err(_) => {
            return Err(no_answer(format!("no answer within {} s{unknown}", secs(timeout))).into())
        }
    };

    let bad = |why: String| RegistryError::BadResponse { server, why };
    let response = Message::from_vec(&bytes).map_err(|e| bad(format!("undecodable: {e}")))?;
    if response.metadata.id != message.metadata.id {
        return Err(bad("the answer is to another request (ID differs)".into()).into());
    }
    let rcode = response.metadata.response_code;
    let verified = verifier.verify(&bytes);
    if !accept.contains(&rcode) {
        let tsig_error = response
            .signature()
            .and_then(|tsig| tsig.data.error.as_ref())
            .map(|e| format!("{e:?}").to_uppercase());
        // A BADTIME refusal verifies too: the server echoes our time signed in it (RFC 8945
        // §5.2.3, its own time is in Other Data), so it falls within our window.
        return Err(Failure::Refused(rcode, tsig_error, verified.is_ok()));
    }
    verified.map_err(|e| bad(format!("its TSIG does not verify with our key: {e}")))?;
    Ok(response)
}

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f32())
}

fn random_id() -> u16 {
    let mut bytes = [0u8; 2];
    // An unpredictable ID is not what protects the exchange (the TSIG does); zero will do if
    // the generator fails.
    let _ = openssl::rand::rand_bytes(&mut bytes);
    u16::from_ne_bytes(bytes)
}
