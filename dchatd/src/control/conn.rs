//! One control connection: read frames under the idle timeout and the frame
//! cap, hand each call to dispatch, write the replies.
//!
//! Calls may be pipelined: the next frame is read while earlier calls run,
//! up to [`MAX_IN_FLIGHT`] of them ([`READ_ONLY_IN_FLIGHT`] for a
//! `public_read` caller, and [`CALLS_AT_ONCE`] over all connections), and
//! replies leave in call order. Which
//! calls run beside which is [`dispatch::overlap`]'s rule; a call that
//! owns the connection (a stream, an upgrade) waits until every reply
//! before it is written.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};

use dchat_control::api::errors as dchat_errors;
use dchat_control::frame::{read_frame, write_frame, FrameError};
use dchat_control::{Call, Reply};
use interprocess::os::unix::uds_local_socket::tokio::Stream;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::auth::Access;
use super::dispatch::{self, Flow, Overlap};
use crate::service::Node;

/// Calls of one connection running at once; reading waits below it.
pub const MAX_IN_FLIGHT: usize = 64;
/// The same for a caller with read-only access (`public_read`), who may be
/// anyone on the machine.
pub const READ_ONLY_IN_FLIGHT: usize = 4;
/// Calls running at once over all connections; a connection waits for one
/// of these before it starts a call, so pipelining cannot flood the
/// daemon's blocking pool and its one database connection.
pub const CALLS_AT_ONCE: usize = 256;
/// How long replies still owed are written at shutdown before the
/// connection is dropped (a client that stops reading must not hold up
/// the daemon's teardown).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame: usize,
    pub idle_timeout: Duration,
}

pub struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    limits: Limits,
    pub access: Access,
}

impl Conn {
    pub fn new(stream: Stream, access: Access, limits: Limits) -> Conn {
        // tokio's own halves, not the generic split: a backup receives a
        // file descriptor through the read half's socket.
        let (read, write) = UnixStream::from(stream).into_split();
        Conn {
            reader: BufReader::new(read),
            writer: write,
            buf: Vec::new(),
            limits,
            access,
        }
    }

    /// Writes one reply; a client that stops reading is cut off after the
    /// idle timeout instead of holding a task forever.
    pub async fn send(&mut self, reply: &Reply) -> Result<(), ()> {
        send_on(&mut self.writer, self.limits, reply).await
    }

    /// The connection's halves and limits, for a method called with
    /// `upgrade` that now speaks `dchat_control::bulk` on it.
    pub fn upgraded(&mut self) -> (&mut BufReader<OwnedReadHalf>, &mut OwnedWriteHalf, Limits) {
        (&mut self.reader, &mut self.writer, self.limits)
    }

    /// Resolves when the client sends anything or hangs up; used while a
    /// reply stream is open, when the client has nothing more to say.
    pub async fn closed(&mut self) {
        let _ = self.reader.fill_buf().await;
    }

    /// Serves calls until the client leaves, misbehaves, idles out, or the
    /// daemon shuts down.
    pub async fn serve(mut self, node: Arc<Node>, shutdown: CancellationToken, calls: Calls) {
        let mut running = Running::default();
        loop {
            let read = match self.next_frame(&mut running, &shutdown).await {
                Next::Frame(read) => read,
                Next::Idle => {
                    tracing::debug!("idle timeout; closing control connection");
                    return;
                }
                // Calls already read are answered; nothing more is read.
                Next::Shutdown => {
                    let _ = running.finish(&mut self, &shutdown).await;
                    return;
                }
                Next::Gone => return,
            };
            match read {
                Ok(true) => {}
                Ok(false) => {
                    let _ = running.finish(&mut self, &shutdown).await;
                    return;
                }
                Err(FrameError::TooLarge { max }) => {
                    tracing::warn!(max, "control request larger than the frame cap; closing");
                    if running.finish(&mut self, &shutdown).await.is_ok() {
                        let _ = self.send(&invalid(&format!("request larger than {max} bytes"))).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "control connection broke");
                    return;
                }
            }
            // After a frame that is not a call we cannot trust what follows:
            // say why, then hang up.
            let call = match parse_call(&self.buf) {
                Ok(call) => call,
                Err(reason) => {
                    tracing::info!(error = %reason, "malformed control request");
                    if running.finish(&mut self, &shutdown).await.is_ok() {
                        let _ = self.send(&invalid(&reason)).await;
                    }
                    return;
                }
            };
            let overlap = dispatch::overlap(self.access, &call);
            if !running.is_empty()
                && !overlap.beside(running.kind)
                && running.finish(&mut self, &shutdown).await.is_err()
            {
                return;
            }
            if overlap == Overlap::Owns {
                if dispatch::handle(&node, &mut self, call, &shutdown).await == Flow::Close {
                    return;
                }
                continue;
            }
            let permit = tokio::select! {
                permit = Arc::clone(&calls.slots).acquire_owned() => permit,
                _ = shutdown.cancelled() => {
                    let _ = running.finish(&mut self, &shutdown).await;
                    return;
                }
            };
            let Ok(permit) = permit else { return };
            let pending = dispatch::start(&node, self.access, call).await;
            running.kind = overlap;
            running.calls.push_back(
                calls.tasks.spawn(
                    async move {
                        let reply = pending.await;
                        drop(permit);
                        reply
                    }
                    .in_current_span(),
                ),
            );
        }
    }

    /// Reads the next frame while writing the replies of running calls as
    /// they finish, in order. The read is never abandoned half way (a frame
    /// cut there would lose the rest of the stream); it only pauses while
    /// [`MAX_IN_FLIGHT`] calls run. The idle timeout counts only while no
    /// call runs.
    async fn next_frame(&mut self, running: &mut Running, shutdown: &CancellationToken) -> Next {
        let Conn {
            reader,
            writer,
            buf,
            limits,
            access,
        } = self;
        let limits = *limits;
        let in_flight = if *access == Access::ReadOnly {
            READ_ONLY_IN_FLIGHT
        } else {
            MAX_IN_FLIGHT
        };
        let frame = read_frame(reader, buf, limits.max_frame);
        tokio::pin!(frame);
        let idle = tokio::time::sleep(limits.idle_timeout);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Next::Shutdown,
                Some(done) = running.calls.next() => {
                    // A client that stops reading holds this write; at
                    // shutdown it is given SHUTDOWN_GRACE, then dropped.
                    let reply = Running::reply(done);
                    tokio::select! {
                        sent = send_on(writer, limits, &reply) => if sent.is_err() {
                            return Next::Gone;
                        },
                        () = grace_after(shutdown) => return Next::Gone,
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                }
                read = &mut frame, if running.calls.len() < in_flight => return Next::Frame(read),
                _ = &mut idle, if running.calls.is_empty() => return Next::Idle,
            }
        }
    }
}

/// Where a connection runs its calls: on `tasks` (so teardown waits for
/// them even when their client has gone), each holding one of `slots`
/// ([`CALLS_AT_ONCE`], shared by all connections).
#[derive(Clone)]
pub struct Calls {
    pub tasks: TaskTracker,
    pub slots: Arc<tokio::sync::Semaphore>,
}

/// What waiting for the next frame came to.
enum Next {
    Frame(Result<bool, FrameError>),
    Idle,
    Shutdown,
    /// The client stopped taking replies.
    Gone,
}

/// The calls of one connection that run, oldest first, and the kind they
/// share.
struct Running {
    calls: FuturesOrdered<JoinHandle<Option<Reply>>>,
    kind: Overlap,
}

impl Default for Running {
    fn default() -> Running {
        Running {
            calls: FuturesOrdered::new(),
            kind: Overlap::Read,
        }
    }
}

impl Running {
    fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Waits for every running call and writes its reply, in order; once
    /// the daemon is shutting down, for [`SHUTDOWN_GRACE`] at most.
    /// An error means the connection must close: a reply may be cut.
    async fn finish(&mut self, conn: &mut Conn, shutdown: &CancellationToken) -> Result<(), ()> {
        tokio::select! {
            done = self.write_all(conn) => done,
            () = grace_after(shutdown) => Err(()),
        }
    }

    async fn write_all(&mut self, conn: &mut Conn) -> Result<(), ()> {
        while let Some(done) = self.calls.next().await {
            send_on(&mut conn.writer, conn.limits, &Running::reply(done)).await?;
        }
        Ok(())
    }

    /// The reply a finished call owes; `oneway` calls owe none (an empty
    /// reply is never written: see [`send_on`]).
    fn reply(done: Result<Option<Reply>, tokio::task::JoinError>) -> Option<Reply> {
        match done {
            Ok(reply) => reply,
            Err(e) => {
                tracing::error!(error = %e, "control call task failed");
                Some(Reply::error(
                    dchat_errors::INTERNAL,
                    json!({ "message": "the call failed inside the daemon" }),
                ))
            }
        }
    }
}

/// Resolves [`SHUTDOWN_GRACE`] after the daemon began shutting down.
async fn grace_after(shutdown: &CancellationToken) {
    shutdown.cancelled().await;
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

/// Writes one reply (none for a `oneway` call); a client that stops
/// reading is cut off after the idle timeout.
async fn send_on(writer: &mut OwnedWriteHalf, limits: Limits, reply: impl Into<Option<&Reply>>) -> Result<(), ()> {
    let Some(reply) = reply.into() else { return Ok(()) };
    let payload = serde_json::to_vec(reply).map_err(|e| tracing::error!(error = %e, "cannot encode reply"))?;
    match tokio::time::timeout(limits.idle_timeout, write_frame(writer, &payload)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "client went away while we replied");
            Err(())
        }
        Err(_) => {
            tracing::info!("client stopped reading replies; closing");
            Err(())
        }
    }
}

/// A call must be a JSON object; serde alone would also take an array in
/// field order, which Varlink does not allow.
fn parse_call(bytes: &[u8]) -> Result<Call, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() {
        return Err("a Varlink call must be a JSON object".into());
    }
    serde_json::from_value(value).map_err(|e| format!("not a Varlink call: {e}"))
}

fn invalid(reason: &str) -> Reply {
    Reply::error(dchat_errors::INVALID_REQUEST, json!({ "reason": reason }))
}
