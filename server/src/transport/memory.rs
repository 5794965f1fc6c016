//! An in-memory transport: messages pass through two bounded channels of [`Bytes`], so that
//! tests can run real sessions (login, dispatch, the hub) for many clients with no sockets,
//! deterministically under tokio's paused clock.
//!
//! The bounds stand in for the network's buffers: a [`MemoryClient`] that stops calling
//! [`recv`](MemoryClient::recv) fills its channel, and then the session's
//! [`flush`](Transport::flush) waits, as a TLS write to a client that stopped reading does.
//! Messages are checked as the TLS transport's frames are (1 to 64 KiB), so a test can send a
//! bad one.

use bytes::Bytes;
use mm_common::frame::{FrameError, ReadError, MAX_FRAME_LEN};
use tokio::sync::mpsc;

use super::{Queued, Transport};

/// The server's end (see the module).
#[derive(Debug)]
pub struct MemoryTransport {
    incoming: mpsc::Receiver<Bytes>,
    /// `None` once closed: the client then sees the end after what was sent.
    outgoing: Option<mpsc::Sender<Bytes>>,
    queued: Queued,
    fingerprint: Option<String>,
}

/// The client's end.
#[derive(Debug)]
pub struct MemoryClient {
    /// `None` once the client closed its sending side.
    outgoing: Option<mpsc::Sender<Bytes>>,
    incoming: mpsc::Receiver<Bytes>,
}

/// A connected pair whose channels each hold `capacity` messages (at least 1); the client
/// presents the certificate `fingerprint` (`None`: no certificate).
pub fn pair(capacity: usize, fingerprint: Option<&str>) -> (MemoryTransport, MemoryClient) {
    let (to_server, from_client) = mpsc::channel(capacity.max(1));
    let (to_client, from_server) = mpsc::channel(capacity.max(1));
    let transport = MemoryTransport {
        incoming: from_client,
        outgoing: Some(to_client),
        queued: Queued::new(|_| 0),
        fingerprint: fingerprint.map(str::to_owned),
    };
    let client = MemoryClient {
        outgoing: Some(to_server),
        incoming: from_server,
    };
    (transport, client)
}

/// The error of a write to a client that is gone.
fn gone() -> std::io::Error {
    std::io::ErrorKind::BrokenPipe.into()
}

impl Transport for MemoryTransport {
    async fn recv(&mut self) -> Result<Option<Bytes>, ReadError> {
        match self.incoming.recv().await {
            Some(payload) if payload.is_empty() => Err(ReadError::Frame(FrameError::Empty)),
            Some(payload) if payload.len() > MAX_FRAME_LEN => {
                Err(ReadError::Frame(FrameError::TooLarge {
                    len: payload.len() as u64,
                }))
            }
            other => Ok(other),
        }
    }

    fn queue(&mut self, payload: Bytes) {
        self.queued.push(payload);
    }

    fn pending(&self) -> usize {
        self.queued.bytes()
    }

    fn discard_pending(&mut self) {
        self.queued.clear();
    }

    /// Sends the queued messages one by one, each as soon as the client's channel has room. A
    /// message leaves the queue only once sent.
    async fn flush(&mut self) -> std::io::Result<()> {
        let tx = self.outgoing.as_ref().ok_or_else(gone)?;
        while !self.queued.is_empty() {
            let permit = tx.reserve().await.map_err(|_| gone())?;
            if let Some(payload) = self.queued.pop() {
                permit.send(payload);
            }
        }
        Ok(())
    }

    fn shrink_idle(&mut self) {
        self.queued.shrink_idle();
    }

    async fn close(&mut self) -> std::io::Result<()> {
        self.outgoing = None;
        Ok(())
    }

    async fn read_discard(&mut self) -> std::io::Result<usize> {
        Ok(self.incoming.recv().await.map_or(0, |m| m.len().max(1)))
    }

    fn peer_fingerprint(&self) -> Option<String> {
        self.fingerprint.clone()
    }
}

impl MemoryClient {
    /// Sends one message payload, waiting while the server's channel is full.
    ///
    /// # Errors
    /// The payload back if the session is gone or this side was closed.
    pub async fn send(&self, payload: Bytes) -> Result<(), Bytes> {
        match &self.outgoing {
            Some(tx) => tx.send(payload).await.map_err(|e| e.0),
            None => Err(payload),
        }
    }

    /// The next message from the server; `None` once it closed (or its session ended) and
    /// everything it sent was received.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.incoming.recv().await
    }

    /// A message already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.incoming.try_recv().ok()
    }

    /// Closes the client's sending side: the session reads the end of its input.
    pub fn close(&mut self) {
        self.outgoing = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_cross_in_order_and_the_ends_are_seen() {
        let (mut t, mut c) = pair(2, Some("fp"));
        assert_eq!(t.peer_fingerprint().as_deref(), Some("fp"));
        c.send(Bytes::from_static(b"a")).await.unwrap();
        assert_eq!(t.recv().await.unwrap().unwrap(), "a");
        for m in ["1", "22", "333"] {
            t.queue(Bytes::from(m));
        }
        assert_eq!(t.pending(), 6);
        // Three messages, room for two: the flush waits until the client takes one.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(m) = c.recv().await {
                got.push(m);
            }
            got
        });
        t.flush().await.unwrap();
        assert_eq!(t.pending(), 0);
        t.close().await.unwrap();
        assert_eq!(reader.await.unwrap(), ["1", "22", "333"]);
        assert_eq!(t.recv().await.unwrap(), None, "the client is gone");
        t.queue(Bytes::from_static(b"x"));
        assert!(t.flush().await.is_err());
    }

    #[tokio::test]
    async fn what_would_not_be_a_frame_is_refused_as_the_tls_transport_refuses_it() {
        let (mut t, c) = pair(4, None);
        c.send(Bytes::new()).await.unwrap();
        c.send(Bytes::from(vec![0u8; MAX_FRAME_LEN + 1]))
            .await
            .unwrap();
        assert!(matches!(
            t.recv().await,
            Err(ReadError::Frame(FrameError::Empty))
        ));
        assert!(matches!(
            t.recv().await,
            Err(ReadError::Frame(FrameError::TooLarge { .. }))
        ));
        assert_eq!(t.peer_fingerprint(), None);
    }
}
