//! Giving freed memory back: glibc keeps the heap pages of freed allocations (per
//! thread arena) until told otherwise, so a proxy's RSS stays at its busiest level long
//! after the traffic is gone. A background task asks it to trim once a minute
//! (`malloc_trim` on a quiet heap costs microseconds).

use std::time::Duration;

/// How often freed heap pages are returned to the system.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Starts the trimming task on the current runtime (no-op off glibc).
pub fn trim_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            // SAFETY: malloc_trim only walks and releases the allocator's own free
            // lists; it takes no pointers and is safe to call from any thread.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
}
