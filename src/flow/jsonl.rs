//! `--flows FILE.jsonl`: each finished flow appended as one JSON line and flushed at
//! once, so a crash loses at most the flow in progress; and reading such a file back.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::record::Flow;

/// Appends flows to a JSON-lines sink, one line and one `write` per flow.
pub struct FlowWriter<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl FlowWriter<File> {
    /// Opens (or creates) `path` for appending: earlier runs' flows are kept, and with
    /// `O_APPEND` each line lands whole at the end even if another process appends too.
    /// A last line a crash cut short is ended first, so it stays one bad line on its own.
    pub fn append_to(path: &Path) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        if file.metadata()?.len() > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            if last != *b"\n" {
                file.write_all(b"\n")?;
            }
        }
        Ok(Self::new(file))
    }
}

impl<W: Write> FlowWriter<W> {
    /// Writes to any sink (a file, or a buffer in tests).
    pub fn new(out: W) -> Self {
        FlowWriter {
            out,
            line: Vec::new(),
        }
    }

    /// Serializes the flow into one line, writes it in one call and flushes.
    pub fn write(&mut self, flow: &Flow) -> io::Result<()> {
        self.line.clear();
        super::json_line::write_flow(&mut self.line, flow);
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.out.flush()
    }

    /// The sink, to inspect what was written.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Why a flows file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the flows: {0}")]
    Io(#[from] io::Error),
    #[error("line {line} is not a flow: {source}")]
    Json {
        line: usize,
        source: serde_json::Error,
    },
}

/// The flows of a JSON-lines file, in order; blank lines are skipped, and a bad line
/// is an error naming its number (1-based).
pub fn read_flows<R: BufRead>(input: R) -> impl Iterator<Item = Result<Flow, ReadError>> {
    input
        .lines()
        .enumerate()
        .filter_map(|(index, line)| match line {
            Err(e) => Some(Err(ReadError::Io(e))),
            Ok(text) if text.trim().is_empty() => None,
            Ok(text) => Some(
                serde_json::from_str(&text).map_err(|source| ReadError::Json {
                    line: index + 1,
                    source,
                }),
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::record::{CapturedBody, Request};

    fn flow(id: u64, body: &[u8]) -> Flow {
        let req = Request {
            method: "GET".into(),
            url: format!("http://a.test/{id}"),
            http_version: "HTTP/1.1".into(),
            headers: vec![("host".into(), "a.test".into())],
            body: CapturedBody::capped(body, 1024),
        };
        let mut flow = Flow::new(id, 1, "127.0.0.1:9".parse().unwrap(), req);
        flow.started_unix_ms = 1_700_000_000_000;
        flow
    }

    /// Counts writes and flushes, to prove one write and one flush per flow.
    #[derive(Default)]
    struct Counting {
        bytes: Vec<u8>,
        writes: usize,
        flushes: usize,
    }

    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    #[test]
    fn one_line_one_write_one_flush_per_flow() {
        let mut w = FlowWriter::new(Counting::default());
        w.write(&flow(1, b"text\nwith newline")).unwrap();
        w.write(&flow(2, &[0, 159, 146, 150])).unwrap();
        let sink = w.into_inner();
        assert_eq!((sink.writes, sink.flushes), (2, 2));
        let text = String::from_utf8(sink.bytes).unwrap();
        assert_eq!(text.lines().count(), 2);
        let back: Vec<Flow> = read_flows(text.as_bytes()).map(Result::unwrap).collect();
        assert_eq!(
            back,
            vec![flow(1, b"text\nwith newline"), flow(2, &[0, 159, 146, 150])]
        );
    }

    #[test]
    fn appending_keeps_what_was_there() {
        let dir = std::env::temp_dir().join(format!("interpose-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flows.jsonl");
        let _ = std::fs::remove_file(&path);
        FlowWriter::append_to(&path)
            .unwrap()
            .write(&flow(1, b""))
            .unwrap();
        FlowWriter::append_to(&path)
            .unwrap()
            .write(&flow(2, b""))
            .unwrap();
        let file = io::BufReader::new(File::open(&path).unwrap());
        let ids: Vec<u64> = read_flows(file).map(|f| f.unwrap().id).collect();
        assert_eq!(ids, vec![1, 2]);
        // A crash left half a line: the next run starts on a line of its own.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":3,")
            .unwrap();
        FlowWriter::append_to(&path)
            .unwrap()
            .write(&flow(4, b""))
            .unwrap();
        let file = io::BufReader::new(File::open(&path).unwrap());
        let read: Vec<_> = read_flows(file)
            .map(|f| f.map(|f| f.id).map_err(|e| e.to_string()))
            .collect();
        assert_eq!(read.len(), 4);
        assert!(read[2]
            .as_ref()
            .unwrap_err()
            .starts_with("line 3 is not a flow"));
        assert_eq!(read[3], Ok(4));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_line_is_named() {
        let good = serde_json::to_string(&flow(1, b"")).unwrap();
        let text = format!("{good}\n\n{{\"id\": 2, \"cut off");
        let results: Vec<_> = read_flows(text.as_bytes()).collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        let e = results[1].as_ref().unwrap_err().to_string();
        assert!(e.starts_with("line 3 is not a flow"), "{e}");
    }
}
