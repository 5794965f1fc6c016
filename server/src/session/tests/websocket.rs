//! The session over the WebSocket transport ([`WsTransport`] on an in-memory byte stream, a
//! tungstenite client on the other end): how it ends for a client that stops reading or logs in
//! again elsewhere is what it is on the native transport.

use futures_util::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::*;
use crate::transport::ws::WsTransport;
use mm_common::key_login;

type Ws = WebSocketStream<DuplexStream>;

/// A session on `ctx` over the WebSocket transport on a byte stream of `room` bytes each way.
async fn ws_session(
    ctx: &Arc<Context>,
    cancel: &CancellationToken,
    room: usize,
) -> (Ws, JoinHandle<()>) {
    let (server, client) = tokio::io::duplex(room);
    let (ctx, cancel) = (Arc::clone(ctx), cancel.clone());
    let task = tokio::spawn(async move {
        let mut conn = WsTransport::new(server, Vec::new(), ctx.limits.write_timeout).await;
        let peer = SocketAddr::from(([192, 0, 2, 9], 1));
        run(&mut conn, peer, &ctx, &cancel).await;
    });
    let ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    (ws, task)
}

async fn send(ws: &mut Ws, msg: &ClientMsg) {
    ws.send(Message::Binary(frame::encode_message(msg).unwrap()))
        .await
        .unwrap();
}

/// The next protocol message, or `None` once the server closed.
async fn recv(ws: &mut Ws) -> Option<ServerMsg> {
    loop {
        match ws.next().await? {
            Ok(Message::Binary(b)) => return Some(ServerMsg::decode(&b).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A whole key login as `nick`; panics unless welcomed.
async fn key_login(ws: &mut Ws, nick: &str, key: &AccountKey) {
    send(
        ws,
        &ClientMsg::KeyHello {
            version: PROTOCOL_VERSION,
            nick: nick.into(),
            key: key.public(),
        },
    )
    .await;
    let Some(ServerMsg::Challenge { nonce }) = recv(ws).await else {
        panic!("no challenge")
    };
    let signature = key.sign(&key_login::signed_message(&nonce, nick, &key.public()));
    send(ws, &ClientMsg::KeyProof { signature }).await;
    assert!(matches!(recv(ws).await, Some(ServerMsg::Welcome { .. })));
    loop {
        if let Some(ServerMsg::Users { last: true, .. }) = recv(ws).await {
            return;
        }
    }
}

fn memory_context() -> Arc<Context> {
    let store = Arc::new(MemoryStore::new(crate::store::Options::from_limits(
        &Limits::default(),
    )));
    context(store)
}

#[tokio::test(start_paused = true)]
async fn a_websocket_client_that_stops_reading_leaves_as_too_slow() {
    let ctx = memory_context();
    let cancel = CancellationToken::new();
    let (mut watcher, _w) = session(&ctx, "fp-watcher", &cancel);
    watcher.login("watcher").await;
    // 16 KiB of stream each way: the client's unread input fills it quickly.
    let (mut ws, task) = ws_session(&ctx, &cancel, 16 * 1024).await;
    key_login(&mut ws, "sloth", &AccountKey::new()).await;
    loop {
        match watcher.recv().await {
            Some(ServerMsg::Joined { nick, .. }) if nick == "sloth" => break,
            Some(_) => {}
            None => panic!("watcher closed"),
        }
    }
    let talker = ctx
        .hub
        .join(ctx.hub.next_conn_id(), "talker", "fp-talker")
        .unwrap();
    for i in 0..200 {
        let _ = ctx.hub.publish(
            talker.outbox.conn_id,
            "talker",
            mm_common::protocol::LOBBY,
            format!("line {i} {}", "x".repeat(1000)),
            false,
        );
    }
    task.await.unwrap();
    loop {
        match watcher.recv().await {
            Some(ServerMsg::Left { nick, reason, .. }) if nick == "sloth" => {
                assert_eq!(reason, LeaveReason::TooSlow);
                break;
            }
            Some(_) => {}
            None => panic!("watcher closed"),
        }
    }
    drop(ws);
}

#[tokio::test(start_paused = true)]
async fn a_websocket_session_replaced_by_a_new_login_is_told_replaced() {
    let ctx = memory_context();
    let cancel = CancellationToken::new();
    let key = AccountKey::new();
    let (mut old, task) = ws_session(&ctx, &cancel, 1 << 16).await;
    key_login(&mut old, "alice", &key).await;
    let (mut new, _t) = ws_session(&ctx, &cancel, 1 << 16).await;
    key_login(&mut new, "alice", &key).await;
    let mut last = None;
    while let Some(msg) = recv(&mut old).await {
        last = Some(msg);
    }
    match last {
        Some(ServerMsg::Error {
            code, fatal: true, ..
        }) => assert_eq!(code, ErrorCode::REPLACED),
        other => panic!("expected `replaced`, got {other:?}"),
    }
    task.await.unwrap();
}
