//! Lines gathered between two writes (access lines, flow lines): appended under a short
//! lock, then taken all at once by whoever writes them. Two buffers take turns, so the
//! one filling up has already grown to a batch's size: a busy proxy neither regrows a
//! buffer (copying it each time) nor frees a large one (which makes the allocator
//! consolidate) at every write.

use std::sync::Mutex;

/// The most capacity kept for reuse: one burst's buffer is not held forever.
const KEEP_MAX: usize = 4 << 20;

#[derive(Default)]
pub struct LineBatch {
    pending: Mutex<Vec<u8>>,
    /// The buffer last written, emptied, waiting to take `pending`'s place.
    spare: Mutex<Vec<u8>>,
}

impl LineBatch {
    /// Appends `bytes`; returns how many bytes wait now and whether they were the first.
    pub fn append(&self, bytes: &[u8]) -> Option<(usize, bool)> {
        let mut pending = self.pending.lock().ok()?;
        let first = pending.is_empty();
        pending.extend_from_slice(bytes);
        Some((pending.len(), first))
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.len())
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes everything waiting (the lock is not held afterwards), and hands it to
    /// `write`; the emptied buffer is kept for a later batch.
    pub fn write_with(&self, write: impl FnOnce(&[u8])) {
        let mut lines = self
            .spare
            .lock()
            .map(|mut spare| std::mem::take(&mut *spare))
            .unwrap_or_default();
        lines.clear();
        match self.pending.lock() {
            Ok(mut pending) => std::mem::swap(&mut *pending, &mut lines),
            Err(_) => return,
        }
        if lines.is_empty() {
            return;
        }
        write(&lines);
        if lines.capacity() <= KEEP_MAX {
            lines.clear();
            if let Ok(mut spare) = self.spare.lock() {
                *spare = lines;
            }
        }
    }

    /// The lock on the waiting bytes, for a caller that waits on a condition variable.
    pub fn pending(&self) -> &Mutex<Vec<u8>> {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_once_in_order_and_the_buffer_is_reused() {
        let batch = LineBatch::default();
        assert_eq!(batch.append(b"a\n"), Some((2, true)));
        assert_eq!(batch.append(b"b\n"), Some((4, false)));
        let mut written = Vec::new();
        batch.write_with(|b| written.extend_from_slice(b));
        assert_eq!(written, b"a\nb\n");
        assert!(batch.is_empty());

        // The written buffer waits as the spare, and takes over at the next write.
        let first_buffer = batch.spare.lock().unwrap().as_ptr();
        assert_eq!(batch.append(b"c\n"), Some((2, true)));
        batch.write_with(|b| assert_eq!(b, b"c\n"));
        assert_eq!(batch.pending.lock().unwrap().as_ptr(), first_buffer);
        assert_eq!(batch.pending.lock().unwrap().capacity(), 8);
        batch.write_with(|_| panic!("nothing waits: no write"));
    }
}
