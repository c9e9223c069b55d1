//! Protocol upgrades (WebSocket) through the reverse proxy: once the upstream said 101,
//! both connections are taken over from hyper and bytes are copied both ways.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::proxy::headers::{requested_upgrade, restore_upgrade_headers};

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
