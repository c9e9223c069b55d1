//! Where finished flows go: the `--filter` that selects them, the `--flows` JSON-lines
//! file and the `--har` document. Files are written by one thread of their own, so an
//! exchange never waits on the disk; the HAR document is closed at shutdown.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use super::body::DEFAULT_CAPTURE_MAX_BODY;
use super::filter::Filter;
use super::har::HarWriter;
use super::jsonl::FlowWriter;
use super::record::Flow;

/// Flows waiting for the writer thread; past this many an exchange waits its turn
/// (memory stays bounded when the disk is slower than the traffic).
const QUEUE: usize = 4096;

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

/// Selects finished flows and hands them to the writer thread.
pub struct Recorder {
    filter: Option<Filter>,
    capture_max_body: usize,
    next_id: AtomicU64,
    /// `None` when nothing is written (only `--filter`), or once closed.
    queue: Mutex<Option<SyncSender<Flow>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Recorder {
    /// Opens the files (a flows file is appended to, a HAR file replaced) and starts
    /// the writer thread; fails with a message naming the file.
    pub fn open(cfg: &RecordConfig) -> Result<Recorder, String> {
        let flows = match &cfg.flows {
            Some(path) => Some(
                FlowWriter::append_to(path)
                    .map_err(|e| format!("cannot open --flows {}: {e}", path.display()))?,
            ),
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
        let (queue, writer) = if flows.is_some() || har.is_some() {
            let (tx, rx) = sync_channel(QUEUE);
            let sinks = Sinks { flows, har };
            let handle = std::thread::Builder::new()
                .name("interpose-flows".into())
                .spawn(move || sinks.run(rx))
                .map_err(|e| format!("cannot start the flow writer: {e}"))?;
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        Ok(Recorder {
            filter: cfg.filter.clone(),
            capture_max_body: cfg.capture_max_body,
            next_id: AtomicU64::new(1),
            queue: Mutex::new(queue),
            writer: Mutex::new(writer),
        })
    }

    /// The id of the next flow (ids count up from 1 in the order exchanges start).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
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

    /// Queues a finished, selected flow for the files.
    pub fn keep(&self, flow: Flow) {
        let sender = match self.queue.lock() {
            Ok(q) => q.clone(),
            Err(_) => None,
        };
        if let Some(sender) = sender {
            // Blocks only while QUEUE flows wait: the disk sets the pace then.
            let _ = sender.send(flow);
        }
    }

    /// Writes what is queued and closes the files (the HAR document is completed).
    /// Flows that finish afterwards are not written.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.join();
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

/// The open files, owned by the writer thread.
struct Sinks {
    flows: Option<FlowWriter<File>>,
    har: Option<(HarWriter<BufWriter<File>>, PathBuf)>,
}

impl Sinks {
    /// Writes each flow as it comes; when every sender is gone, closes the HAR.
    fn run(mut self, rx: Receiver<Flow>) {
        let mut warned = false;
        for flow in rx {
            if let Err(e) = self.write(&flow) {
                if !warned {
                    tracing::warn!("cannot record flows: {e}");
                    warned = true;
                }
            }
        }
        if let Some((har, path)) = self.har.take() {
            match har.finish() {
                Ok((_, n)) => tracing::info!("wrote {n} entries to {}", path.display()),
                Err(e) => tracing::warn!("cannot finish {}: {e}", path.display()),
            }
        }
    }

    fn write(&mut self, flow: &Flow) -> io::Result<()> {
        if let Some(flows) = &mut self.flows {
            flows.write(flow)?;
        }
        if let Some((har, _)) = &mut self.har {
            har.add(flow)?;
        }
        Ok(())
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
