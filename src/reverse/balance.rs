//! Upstream selection: round-robin over the `--to` list, skipping upstreams that
//! recently refused connections or timed out on connect (passive health).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::config::UpstreamTarget;

/// One upstream and until when it is considered down.
struct Member {
    target: UpstreamTarget,
    /// Milliseconds since `Balancer::epoch`; 0 = up.
    down_until: AtomicU64,
}

/// Round-robin with passive health; shared by every connection.
pub struct Balancer {
    members: Vec<Member>,
    next: AtomicUsize,
    cooldown: Duration,
    epoch: Instant,
}

impl Balancer {
    /// All upstreams up, turn starting at the first.
    pub fn new(targets: Vec<UpstreamTarget>, cooldown: Duration) -> Self {
        Balancer {
            members: targets
                .into_iter()
                .map(|target| Member {
                    target,
                    down_until: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            cooldown,
            epoch: Instant::now(),
        }
    }

    /// How many upstreams there are (a retry needs two).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when no upstream is configured.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The upstream at `index`, as returned by `pick`.
    pub fn target(&self, index: usize) -> Option<&UpstreamTarget> {
        self.members.get(index).map(|m| &m.target)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_up(&self, index: usize, now: u64) -> bool {
        self.members
            .get(index)
            .is_some_and(|m| m.down_until.load(Ordering::Relaxed) <= now)
    }

    /// The next upstream in turn that is up. When all are down the one in turn is
    /// returned anyway: trying it is better than refusing without asking.
    pub fn pick(&self) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = self.now_ms();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.is_up(i, now))
            .or(Some(start))
    }

    /// The upstream after `failed` that is up, for one retry; None if there is none.
    pub fn pick_other(&self, failed: usize) -> Option<usize> {
        let n = self.members.len();
        let now = self.now_ms();
        (1..n)
            .map(|k| (failed + k) % n)
            .find(|&i| self.is_up(i, now))
    }

    /// Skips `index` for the cooldown.
    pub fn mark_down(&self, index: usize) {
        if let Some(m) = self.members.get(index) {
            let until = self
                .now_ms()
                .saturating_add(u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX));
            // At least 1 so that a zero cooldown still reads as "was down" until now passes.
            m.down_until.store(until.max(1), Ordering::Relaxed);
            tracing::warn!(
                "upstream {} marked down for {}s",
                m.target.origin(),
                self.cooldown.as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::parse_upstream;
    use super::*;

    fn balancer(n: usize, cooldown: Duration) -> Balancer {
        let targets = (0..n)
            .map(|i| parse_upstream(&format!("127.0.0.1:{}", 8000 + i)).unwrap())
            .collect();
        Balancer::new(targets, cooldown)
    }

    #[test]
    fn round_robin_skips_down_members() {
        let b = balancer(3, Duration::from_secs(60));
        let picks: Vec<usize> = (0..6).filter_map(|_| b.pick()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        b.mark_down(1);
        let picks: Vec<usize> = (0..4).filter_map(|_| b.pick()).collect();
        assert_eq!(picks, [0, 2, 2, 0]);
        assert_eq!(b.pick_other(0), Some(2));
        assert_eq!(b.pick_other(2), Some(0));
        b.mark_down(0);
        b.mark_down(2);
        // All down: still one to try, but no other for a retry.
        assert!(b.pick().is_some());
        assert_eq!(b.pick_other(0), None);
    }

    #[test]
    fn cooldown_expires() {
        let b = balancer(2, Duration::ZERO);
        b.mark_down(0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(b.pick_other(1), Some(0));
        assert_eq!(balancer(1, Duration::ZERO).pick_other(0), None);
    }
}
