//! Protocol upgrades (WebSocket) through the reverse proxy: once the upstream said 101,
//! both connections are taken over from hyper and bytes are copied both ways.

use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The `Upgrade` value when the request asks to switch protocols (`Connection: upgrade`).
pub fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Puts back the two hop-by-hop headers an upgrade needs on the next hop.
pub fn restore_upgrade_headers(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Relays bytes between the upgraded client and upstream connections until either
/// side closes or `stop` fires. Runs in `tunnels` so the connection task waits for it.
pub fn relay_upgraded(
    tunnels: &TaskTracker,
    stop: CancellationToken,
    client: OnUpgrade,
    upstream: OnUpgrade,
) {
    tunnels.spawn(async move {
        let (client, upstream) = tokio::select! {
            pair = async { tokio::join!(client, upstream) } => pair,
            _ = stop.cancelled() => return,
        };
        let (mut client, mut upstream) = match (client, upstream) {
            (Ok(c), Ok(u)) => (TokioIo::new(c), TokioIo::new(u)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!("upgrade failed: {e}");
                return;
            }
        };
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(e) = r {
                    tracing::debug!("upgraded connection ended: {e}");
                }
            }
            _ = stop.cancelled() => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_needs_connection_token() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(requested_upgrade(&h).is_none());
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(requested_upgrade(&h).unwrap(), "websocket");
    }
}
