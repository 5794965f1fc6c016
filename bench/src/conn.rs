//! A lean protocol client for load: TLS, hello, then raw frames. The full client library is
//! used only where its features matter (the `/secure` scenario).

use std::sync::Arc;

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use mm_common::frame::{self, FrameReader, ReadError};
use mm_common::protocol::{ClientMsg, ServerMsg, PROTOCOL_VERSION};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

type Tls = TlsStream<TcpStream>;

/// The reading side of a bench connection.
pub struct Reader {
    read: ReadHalf<Tls>,
    /// 8 KiB per read: a bench client receives fan-out at full speed.
    frames: FrameReader<{ 8 * 1024 }>,
}

/// The writing side.
pub struct Writer {
    write: WriteHalf<Tls>,
    out: BytesMut,
}

/// Connects, logs in as `nick` and reads the welcome and user list.
pub async fn login(
    addr: &str,
    tls: &Arc<rustls::ClientConfig>,
    nick: &str,
) -> anyhow::Result<(Reader, Writer)> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
    let stream = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (read, write) = tokio::io::split(stream);
    let mut reader = Reader {
        read,
        frames: FrameReader::new(),
    };
    let mut writer = Writer {
        write,
        out: BytesMut::new(),
    };
    writer
        .send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            nick: nick.to_owned(),
        })
        .await?;
    match reader.next().await? {
        Some(ServerMsg::Welcome { .. }) => {}
        other => bail!("{nick}: expected Welcome, got {other:?}"),
    }
    loop {
        match reader.next().await? {
            Some(ServerMsg::Users { last: true, .. }) => break,
            Some(ServerMsg::Users { .. }) | Some(ServerMsg::Joined { .. }) => {}
            other => bail!("{nick}: expected Users, got {other:?}"),
        }
    }
    Ok((reader, writer))
}

impl Reader {
    /// The next message; `None` when the server closed.
    pub async fn next(&mut self) -> anyhow::Result<Option<ServerMsg>> {
        match self.frames.read_frame(&mut self.read).await {
            Ok(Some(payload)) => Ok(Some(ServerMsg::decode(&payload)?)),
            // A close in the middle of a frame ends the stream as a clean close does.
            Ok(None) | Err(ReadError::Truncated) => Ok(None),
            Err(ReadError::Frame(e)) => bail!("bad frame: {e}"),
            Err(e) => Err(e.into()),
        }
    }
}

impl Writer {
    /// Queues a message; call [`Writer::flush`] to send.
    pub fn queue(&mut self, msg: &ClientMsg) -> anyhow::Result<()> {
        frame::encode_into(msg, &mut self.out)?;
        Ok(())
    }

    /// Sends what is queued.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.write.write_all(&self.out).await?;
        self.write.flush().await?;
        self.out.clear();
        Ok(())
    }

    /// Queues and sends one message.
    pub async fn send(&mut self, msg: &ClientMsg) -> anyhow::Result<()> {
        self.queue(msg)?;
        self.flush().await
    }
}
