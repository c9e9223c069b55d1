//! Where finished flows go: the `--filter` that selects them, the `--flows` JSON-lines
//! file and the `--har` document. A flow is serialized by the exchange that finished it
//! and written, with the others that finished in the same few scheduler passes, by one
//! `write` to a file opened for appending, right after those passes: no thread hand-off
//! per flow (which cost more than the writing) and no timer, so a crash loses the flows
//! in progress and at most a few passes' finished ones (well under a millisecond's). The HAR document is buffered and
//! completed at shutdown.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::body::DEFAULT_CAPTURE_MAX_BODY;
use super::filter::Filter;
use super::har::HarWriter;
use super::jsonl::FlowWriter;
use super::record::Flow;
use crate::line_batch::LineBatch;

/// What the user asked to record, as parsed from flags or the config file.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// `--flows FILE.jsonl`.
    pub flows: Option<PathBuf>,
    /// `--har FILE.har`.
    pub har: Option<PathBuf>,
    /// `--filter EXPR`: only matching flows are printed and recorded.
    pub filter: Option<Filter>,
    /// `--capture-max-body`: bytes of each body kept in a flow.
    pub capture_max_body: usize,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            flows: None,
            har: None,
            filter: None,
            capture_max_body: DEFAULT_CAPTURE_MAX_BODY,
        }
    }
}

impl RecordConfig {
    /// Whether exchanges need a flow built at all (to record it, or to filter by it).
    pub fn is_active(&self) -> bool {
        self.flows.is_some() || self.har.is_some() || self.filter.is_some()
    }
}

/// Selects finished flows and writes them.
pub struct Recorder {
    filter: Option<Filter>,
    capture_max_body: usize,
    next_id: AtomicU64,
    /// `--flows`.
    flows: Option<FlowsFile>,
    /// `--har`: `None` once completed.
    har: Mutex<Option<(HarWriter<BufWriter<File>>, PathBuf)>>,
    /// A write failed: said once, not per flow.
    warned: Arc<AtomicBool>,
    /// Exchanges begun and not yet finished: what shutdown waits for.
    in_flight: AtomicUsize,
}

/// The flows file, opened for appending (each `write` lands whole at the end), and the
/// finished lines waiting for their write.
#[derive(Clone)]
struct FlowsFile {
    file: Arc<File>,
    path: Arc<PathBuf>,
    pending: Arc<LineBatch>,
}

/// Scheduler passes a write may wait for more finished flows to join it.
const MAX_PASSES: usize = 4;

impl FlowsFile {
    /// Writes every line waiting, in one `write` (the lock is not held meanwhile).
    fn write_pending(&self, warned: &AtomicBool) {
        self.pending.write_with(|lines| {
            if let Err(e) = (&*self.file).write_all(lines) {
                if !warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!("cannot record flows to {}: {e}", self.path.display());
                }
            }
        });
    }
}

thread_local! {
    /// The line being serialized, reused by each flow this thread writes.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Recorder {
    /// Opens the files (a flows file is appended to, a HAR file replaced); fails with a
    /// message naming the file.
    pub fn open(cfg: &RecordConfig) -> Result<Recorder, String> {
        let flows = match &cfg.flows {
            Some(path) => {
                let writer = FlowWriter::append_to(path)
                    .map_err(|e| format!("cannot open --flows {}: {e}", path.display()))?;
                Some(FlowsFile {
                    file: Arc::new(writer.into_inner()),
                    path: Arc::new(path.clone()),
                    pending: Arc::new(LineBatch::default()),
                })
            }
            None => None,
        };
        let har = match &cfg.har {
            Some(path) => {
                let file = File::create(path)
                    .map_err(|e| format!("cannot create --har {}: {e}", path.display()))?;
                let har = HarWriter::start(BufWriter::new(file))
                    .map_err(|e| format!("cannot write --har {}: {e}", path.display()))?;
                Some((har, path.clone()))
            }
            None => None,
        };
        Ok(Recorder {
            filter: cfg.filter.clone(),
            capture_max_body: cfg.capture_max_body,
            next_id: AtomicU64::new(1),
            flows,
            har: Mutex::new(har),
            warned: Arc::new(AtomicBool::new(false)),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// The id of the next flow (ids count up from 1 in the order exchanges start); the
    /// exchange counts as in flight until [`Recorder::ended`].
    pub fn next_id(&self) -> u64 {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// An exchange that took an id has ended (recorded or not).
    pub fn ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// At shutdown: waits (up to `limit`) for the exchanges still finishing (HTTP/2
    /// streams end in tasks of their own, after their connection), then completes the
    /// files.
    pub async fn finish(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.in_flight.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.close();
    }

    /// Bytes of each body a flow keeps.
    pub fn capture_max_body(&self) -> usize {
        self.capture_max_body
    }

    /// Whether `--filter` selects the flow (every flow when there is no filter).
    pub fn selects(&self, flow: &Flow) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(flow))
    }

    /// Whether a filter was given (then dumps wait for the flow's end to be decided).
    pub fn has_filter(&self) -> bool {
        self.filter.is_some()
    }

    /// Writes a finished, selected flow: one line appended to the flows file, one
    /// entry to the HAR document.
    pub fn keep(&self, flow: Flow) {
        if let Some(flows) = &self.flows {
            self.append(flows, &flow);
        }
        if let Ok(mut har) = self.har.lock() {
            if let Some((writer, path)) = har.as_mut() {
                if let Err(e) = writer.add(&flow) {
                    self.warn(path, &e);
                }
            }
        }
    }

    /// Serializes the flow into the lines waiting to be written; the first line to wait
    /// also schedules their write, which runs once the tasks ready now have run: flows
    /// that finish together go out in one `write`, none waits for a timer.
    fn append(&self, flows: &FlowsFile, flow: &Flow) {
        let first = LINE.with_borrow_mut(|line| {
            line.clear();
            super::json_line::write_flow(line, flow);
            line.push(b'\n');
            flows.pending.append(line).map(|(_, first)| first)
        });
        if first != Some(true) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let flows = flows.clone();
                let warned = self.warned.clone();
                runtime.spawn(async move {
                    // A task spawned here runs next: yielding lets the tasks ready now
                    // finish their flows first, so that they share this write. It
                    // yields again while more arrive, a few passes at most.
                    let mut seen = 0;
                    for _ in 0..MAX_PASSES {
                        tokio::task::yield_now().await;
                        let waiting = flows.pending.len();
                        if waiting == seen {
                            break;
                        }
                        seen = waiting;
                    }
                    flows.write_pending(&warned)
                });
            }
            Err(_) => flows.write_pending(&self.warned),
        }
    }

    fn warn(&self, path: &std::path::Path, e: &io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("cannot record flows to {}: {e}", path.display());
        }
    }

    /// Completes the HAR document; flows that finish afterwards go to the flows file
    /// only.
    pub fn close(&self) {
        if let Some(flows) = &self.flows {
            flows.write_pending(&self.warned);
        }
        let har = self.har.lock().ok().and_then(|mut h| h.take());
        if let Some((har, path)) = har {
            match har.finish() {
                Ok((_, n)) => tracing::info!("wrote {n} entries to {}", path.display()),
                Err(e) => tracing::warn!("cannot finish {}: {e}", path.display()),
            }
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("filter", &self.filter)
            .field("capture_max_body", &self.capture_max_body)
            .finish_non_exhaustive()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close();
    }
}

/// A fresh id for a client connection (flows on one connection share it).
pub fn next_connection_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::record::Request;
    use http::{HeaderMap, Method, Version};

    fn flow(id: u64, url: &str) -> Flow {
        let req = Request::new(&Method::GET, url, Version::HTTP_11, &HeaderMap::new());
        Flow::new(id, 1, "127.0.0.1:1000".parse().unwrap(), req)
    }

    #[test]
    fn kept_flows_reach_both_files_and_the_har_is_closed() {
        let dir = std::env::temp_dir().join(format!("interpose-recorder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = RecordConfig {
            flows: Some(dir.join("f.jsonl")),
            har: Some(dir.join("f.har")),
            filter: Some(crate::flow::filter::parse("~u keep").unwrap()),
            ..RecordConfig::default()
        };
        let rec = Recorder::open(&cfg).unwrap();
        for (i, url) in ["http://a.test/keep", "http://a.test/drop"]
            .iter()
            .enumerate()
        {
            let f = flow(i as u64, url);
            if rec.selects(&f) {
                rec.keep(f);
            }
        }
        rec.close();
        let lines = std::fs::read_to_string(dir.join("f.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
        assert!(lines.contains("/keep"));
        let har: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("f.har")).unwrap()).unwrap();
        assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_file_is_named() {
        let cfg = RecordConfig {
            flows: Some("/nonexistent-dir/x.jsonl".into()),
            ..RecordConfig::default()
        };
        let err = Recorder::open(&cfg).err().unwrap();
        assert!(err.contains("--flows /nonexistent-dir/x.jsonl"), "{err}");
    }
}
