//! Leaves by host: a bounded LRU where each host has one slot that is filled once,
//! so 100 clients arriving at once for a new host cause exactly one signature.
//!
//! Synchronous on purpose: rustls asks its `ResolvesServerCert` synchronously, and a
//! mint is one ECDSA signature (tens of microseconds), so the rare waiter on a slot
//! being filled blocks for about as long as a lock. [`LeafCache::leaf_async`] moves
//! a miss off the async worker for callers that are in a hurry anyway.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use lru::LruCache;

use super::mint::{mint_leaf, normalize_host};
use super::{Ca, CaError, Leaf};

/// How many hosts' leaves are kept by default (issue 4).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// One host's leaf, minted by whoever gets there first; the others wait on it.
type Slot = Arc<OnceLock<Result<Leaf, CaError>>>;

/// The bounded single-flight cache of minted leaves.
pub struct LeafCache {
    ca: Arc<Ca>,
    slots: Mutex<LruCache<String, Slot>>,
    mints: AtomicU64,
}

impl LeafCache {
    /// A cache for `ca` keeping at most `capacity` hosts (0 is taken as 1).
    pub fn new(ca: Arc<Ca>, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            ca,
            slots: Mutex::new(LruCache::new(capacity)),
            mints: AtomicU64::new(0),
        }
    }

    /// The CA the leaves are signed with.
    pub fn ca(&self) -> &Arc<Ca> {
        &self.ca
    }

    /// The leaf for `host`, minted on first use; concurrent first uses mint once.
    ///
    /// A failed mint is reported to everyone waiting on it, then forgotten so that a
    /// later request tries again.
    pub fn leaf(&self, host: &str) -> Result<Leaf, CaError> {
        let key = normalize_host(host);
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slots.get_or_insert(key.clone(), || Arc::new(OnceLock::new())))
        };
        let result = slot.get_or_init(|| {
            self.mints.fetch_add(1, Ordering::Relaxed);
            mint_leaf(&self.ca, &key)
        });
        if result.is_err() {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            if slots.peek(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                slots.pop(&key);
            }
        }
        result.clone()
    }

    /// The leaf for `host` if it is already minted, without minting or waiting.
    pub fn cached(&self, host: &str) -> Option<Leaf> {
        let key = normalize_host(host);
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .get(&key)
            .and_then(|slot| slot.get())
            .and_then(|r| r.as_ref().ok())
            .cloned()
    }

    /// Like [`leaf`](Self::leaf), but a miss is minted on tokio's blocking pool, for a
    /// caller that reads the ClientHello first (e.g. with `LazyConfigAcceptor`).
    pub async fn leaf_async(self: &Arc<Self>, host: &str) -> Result<Leaf, CaError> {
        if let Some(leaf) = self.cached(host) {
            return Ok(leaf);
        }
        let cache = Arc::clone(self);
        let owned = host.to_string();
        tokio::task::spawn_blocking(move || cache.leaf(&owned))
            .await
            .map_err(|e| CaError::Mint {
                host: host.to_string(),
                msg: format!("minting task failed: {e}"),
            })?
    }

    /// How many leaves have been minted since start (for tests and stats).
    pub fn mint_count(&self) -> u64 {
        self.mints.load(Ordering::Relaxed)
    }

    /// How many hosts are cached now.
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no host is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCache")
            .field("ca", &self.ca)
            .field("hosts", &self.len())
            .field("mints", &self.mint_count())
            .finish()
    }
}
