//! `--dump bodies`: a capped copy of a body taken aside while it streams through, and
//! how that copy is shown: decoded per `Content-Encoding`, text as text, binary
//! summarised, truncation and decoding failures said in one line.

use std::fmt::Write as _;
use std::io::{self, Read};

/// The first `cap` bytes of a body as they crossed the wire, and how many crossed.
/// Never holds more than `cap` bytes, however long the body.
#[derive(Debug, Clone, Default)]
pub struct BodyCapture {
    cap: usize,
    kept: Vec<u8>,
    total: u64,
}

impl BodyCapture {
    /// A capture keeping at most `cap` bytes (allocated only once a body arrives).
    pub fn new(cap: usize) -> Self {
        BodyCapture {
            cap,
            kept: Vec::new(),
            total: 0,
        }
    }

    /// Records a piece of body passing through: counted, and copied while room remains.
    pub fn observe(&mut self, data: &[u8]) {
        self.total = self.total.saturating_add(data.len() as u64);
        let room = self.cap.saturating_sub(self.kept.len()).min(data.len());
        if let Some(part) = data.get(..room) {
            self.kept.extend_from_slice(part);
        }
    }

    /// Counts bytes that crossed unseen (a blind tunnel's), keeping none of them.
    pub fn count(&mut self, n: u64) {
        self.total = self.total.saturating_add(n);
    }

    /// Forgets a body (a request sent again on a fresh connection is captured afresh).
    pub fn clear(&mut self) {
        self.kept.clear();
        self.total = 0;
    }

    pub fn kept(&self) -> &[u8] {
        &self.kept
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

/// What is known about a body to show it.
#[derive(Debug, Clone, Copy)]
pub struct BodyView<'a> {
    /// The captured bytes, still encoded as on the wire.
    pub kept: &'a [u8],
    /// How many body bytes crossed the wire in all.
    pub total: u64,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
}

/// Renders a captured body as dump lines, each starting with `prefix` (`> ` or `< `),
/// after a separating line; nothing for an empty body. At most `max` decoded bytes are shown.
pub fn render_body(view: &BodyView<'_>, max: usize, prefix: &str) -> String {
    if view.total == 0 {
        return String::new();
    }
    let mut out = format!("{}\n", prefix.trim_end());
    let wire_cut = (view.kept.len() as u64) < view.total;
    let codings = codings(view.content_encoding);
    let label = codings.join(", ");
    let Decoded { bytes, end } = decode(view.kept, &codings, max);
    let cut = wire_cut || matches!(end, End::Capped);
    // A cut-off capture usually decodes well up to the cut, then fails: that is no error.
    let failure = match end {
        End::Failed(e) if !wire_cut => Some(e),
        _ => None,
    };
    if let (Some(e), true) = (&failure, bytes.is_empty()) {
        let _ = writeln!(
            out,
            "{prefix}<could not decode {label} body ({} bytes): {e}>",
            view.total
        );
        return out;
    }
    let shown = bytes.len();
    if !is_text(view.content_type, &bytes, cut || failure.is_some()) {
        let ct = view
            .content_type
            .map(|t| format!(", {t}"))
            .unwrap_or_default();
        let enc = if label.is_empty() {
            String::new()
        } else {
            format!(", {label}")
        };
        let _ = writeln!(out, "{prefix}<binary {} bytes{enc}{ct}>", view.total);
        return out;
    }
    write_text(&mut out, prefix, &bytes);
    if let Some(e) = failure {
        let _ = writeln!(
            out,
            "{prefix}<decoding {label} failed after {shown} bytes: {e}>"
        );
        return out;
    }
    let kept = view.kept.len();
    match (label.is_empty(), cut) {
        (true, true) => {
            let _ = writeln!(out, "{prefix}… ({shown} of {} bytes shown)", view.total);
        }
        (false, true) => {
            let _ = writeln!(
                out,
                "{prefix}… ({shown} decoded bytes shown, from {kept} of {} {label} bytes)",
                view.total
            );
        }
        (false, false) => {
            let _ = writeln!(
                out,
                "{prefix}({label}: {shown} bytes decoded from {})",
                view.total
            );
        }
        (true, false) => {}
    }
    out
}

/// The content codings of a `Content-Encoding` value, in the order they were applied,
/// lower-cased, without `identity`. Shared with `--modify-body` (`rules::codec`).
pub(crate) fn codings(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect()
}

/// Decoded bytes (at most `max`), and how decoding ended.
pub(crate) struct Decoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) end: End,
}

pub(crate) enum End {
    /// The stream ended where it should.
    Complete,
    /// More would have followed `max` bytes.
    Capped,
    /// The decoder failed (or the stream ended early).
    Failed(String),
}

/// The largest zstd window HTTP allows (RFC 9659, as browsers enforce it):
/// a frame asking for more is refused rather than given its memory.
const ZSTD_MAX_WINDOW: u64 = 8 * 1024 * 1024;

/// Undoes `codings` (last applied first) on `wire`, keeping at most `max` bytes.
pub(crate) fn decode(wire: &[u8], codings: &[String], max: usize) -> Decoded {
    let failed = |e: String| Decoded {
        bytes: Vec::new(),
        end: End::Failed(e),
    };
    let mut reader: Box<dyn Read + '_> = Box::new(wire);
    for coding in codings.iter().rev() {
        reader = match coding.as_str() {
            "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            "deflate" => Box::new(Deflate::new(reader)),
            "br" => Box::new(brotli_decompressor::Decompressor::new(reader, 4096)),
            "zstd" => match ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
                reader,
                ZSTD_MAX_WINDOW,
            ) {
                Ok(d) => Box::new(d),
                Err(e) => return failed(e.to_string()),
            },
            other => return failed(format!("unknown content-encoding {other:?}")),
        };
    }
    read_capped(reader, max)
}

/// Reads up to `max` bytes (and one more, to know whether there was more).
fn read_capped(mut reader: impl Read, max: usize) -> Decoded {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                return Decoded {
                    bytes,
                    end: End::Complete,
                }
            }
            Ok(n) => {
                bytes.extend_from_slice(buf.get(..n).unwrap_or_default());
                if bytes.len() > max {
                    bytes.truncate(max);
                    return Decoded {
                        bytes,
                        end: End::Capped,
                    };
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let why = if e.kind() == io::ErrorKind::UnexpectedEof {
                    "the stream ends early".to_string()
                } else {
                    e.to_string()
                };
                return Decoded {
                    bytes,
                    end: End::Failed(why),
                };
            }
        }
    }
}

/// `deflate` is zlib-wrapped by the standard, raw DEFLATE by some servers: the first
/// two bytes tell which (a zlib header is a multiple of 31 with method 8).
enum Deflate<R: Read> {
    Zlib(flate2::read::ZlibDecoder<R>),
    Raw(flate2::read::DeflateDecoder<R>),
}

impl<'a> Deflate<io::Chain<io::Cursor<Vec<u8>>, Box<dyn Read + 'a>>> {
    fn new(mut inner: Box<dyn Read + 'a>) -> Self {
        let mut head = [0u8; 2];
        let mut got = 0;
        while got < head.len() {
            match inner.read(head.get_mut(got..).unwrap_or_default()) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let zlib = got == 2 && head[0] & 0x0f == 8 && u16::from_be_bytes(head) % 31 == 0;
        let stream = io::Cursor::new(head.get(..got).unwrap_or_default().to_vec()).chain(inner);
        if zlib {
            Deflate::Zlib(flate2::read::ZlibDecoder::new(stream))
        } else {
            Deflate::Raw(flate2::read::DeflateDecoder::new(stream))
        }
    }
}

impl<R: Read> Read for Deflate<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Deflate::Zlib(d) => d.read(buf),
            Deflate::Raw(d) => d.read(buf),
        }
    }
}

/// Whether to show a body as text: by its declared type, else by sniffing for UTF-8
/// without control characters (an incomplete last character is fine when cut).
fn is_text(content_type: Option<&str>, bytes: &[u8], cut: bool) -> bool {
    if let Some(ct) = content_type {
        let ct = ct.to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence.starts_with("text/")
            || ["json", "xml", "javascript", "x-www-form-urlencoded"]
                .iter()
                .any(|t| essence.contains(t))
        {
            return true;
        }
    }
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) if cut && e.error_len().is_none() => {
            std::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or_default()).unwrap_or("")
        }
        Err(_) => return false,
    };
    !valid
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c'))
}

/// Writes text lines with `prefix`; control characters are escaped so that a body
/// cannot drive the terminal.
fn write_text(out: &mut String, prefix: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for line in text.split_terminator('\n') {
        out.push_str(prefix);
        for c in line.strip_suffix('\r').unwrap_or(line).chars() {
            if c.is_control() && c != '\t' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn view<'a>(kept: &'a [u8], total: u64, ct: &'a str, ce: &'a str) -> BodyView<'a> {
        BodyView {
            kept,
            total,
            content_type: (!ct.is_empty()).then_some(ct),
            content_encoding: (!ce.is_empty()).then_some(ce),
        }
    }

    fn text_body(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("line {i} of a test body\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn capture_keeps_at_most_the_cap_and_counts_everything() {
        let mut c = BodyCapture::new(10);
        c.observe(b"hello ");
        c.observe(b"world, and more");
        c.observe(b"!");
        assert_eq!(c.kept(), b"hello worl");
        assert_eq!(c.total(), 22);
        let mut none = BodyCapture::new(0);
        none.observe(b"abc");
        assert!(none.kept().is_empty());
        assert_eq!(none.total(), 3);
        c.clear();
        assert_eq!((c.kept().len(), c.total()), (0, 0));
    }

    #[test]
    fn plain_text_is_shown_with_prefix() {
        let out = render_body(
            &view(b"a=1\r\nb=2\n", 9, "text/plain; charset=utf-8", ""),
            4096,
            "< ",
        );
        assert_eq!(out, "<\n< a=1\n< b=2\n");
        assert_eq!(render_body(&view(b"", 0, "", ""), 4096, "> "), "");
    }

    #[test]
    fn truncation_is_said() {
        let body = text_body(100);
        let mut c = BodyCapture::new(64);
        c.observe(&body);
        let out = render_body(&view(c.kept(), c.total(), "application/json", ""), 64, "> ");
        let expected = format!("… (64 of {} bytes shown)", body.len());
        assert!(out.ends_with(&format!("> {expected}\n")), "{out}");
        assert!(out.contains("> line 0 of a test body\n"), "{out}");
    }

    #[test]
    fn gzip_and_deflate_round_trip() {
        let body = text_body(3);
        let gz = gzip(&body);
        let out = render_body(
            &view(&gz, gz.len() as u64, "text/plain", "gzip"),
            4096,
            "< ",
        );
        assert!(out.contains("< line 2 of a test body\n"), "{out}");
        assert!(out.contains(&format!(
            "(gzip: {} bytes decoded from {})",
            body.len(),
            gz.len()
        )));

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&body).unwrap();
        let zlib = z.finish().unwrap();
        let mut r = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        r.write_all(&body).unwrap();
        let raw = r.finish().unwrap();
        for wire in [zlib, raw] {
            let out = render_body(&view(&wire, wire.len() as u64, "", "deflate"), 4096, "< ");
            assert!(out.contains("< line 1 of a test body\n"), "{out}");
        }
    }

    #[test]
    fn brotli_and_zstd_round_trip() {
        let body = text_body(5);
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(&body).unwrap();
        }
        let out = render_body(&view(&br, br.len() as u64, "text/html", "br"), 4096, "< ");
        assert!(out.contains("< line 4 of a test body\n"), "{out}");

        let zst = ruzstd::encoding::compress_to_vec(
            &body[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let out = render_body(&view(&zst, zst.len() as u64, "", "zstd"), 4096, "< ");
        assert!(out.contains("< line 3 of a test body\n"), "{out}");
    }

    #[test]
    fn a_cut_off_compressed_capture_shows_its_decodable_prefix() {
        let body: Vec<u8> = (0..2000u32)
            .flat_map(|i| format!("{i:08x} {}\n", i.wrapping_mul(2_654_435_761)).into_bytes())
            .collect();
        let gz = gzip(&body);
        let mut c = BodyCapture::new(gz.len() / 2);
        c.observe(&gz);
        let out = render_body(&view(c.kept(), c.total(), "text/plain", "gzip"), 512, "< ");
        assert!(out.contains("< 00000000 0\n"), "{out}");
        let note = format!(
            "512 decoded bytes shown, from {} of {} gzip bytes",
            gz.len() / 2,
            gz.len()
        );
        assert!(out.contains(&note), "{out}");
        let lines: usize = out.lines().map(|l| l.len()).sum();
        assert!(lines < 700, "decoded output is capped: {out}");
    }

    #[test]
    fn binary_is_summarised() {
        let png = [0x89, b'P', b'N', b'G', 0, 0, 0, 13, 0xff, 0xfe];
        let out = render_body(&view(&png, 1234, "image/png", ""), 4096, "< ");
        assert_eq!(out, "<\n< <binary 1234 bytes, image/png>\n");
        let out = render_body(&view(&png, 10, "", ""), 4096, "< ");
        assert_eq!(out, "<\n< <binary 10 bytes>\n");
    }

    #[test]
    fn bad_data_says_so_in_one_line() {
        let junk = b"this is not gzip at all, not even close";
        let out = render_body(
            &view(junk, junk.len() as u64, "text/plain", "gzip"),
            4096,
            "< ",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[1].starts_with("< <could not decode gzip body (39 bytes): "),
            "{out}"
        );
        let out = render_body(&view(junk, 39, "", "compress"), 4096, "< ");
        assert!(
            out.contains("unknown content-encoding \"compress\""),
            "{out}"
        );
        let out = render_body(&view(junk, 39, "", "zstd"), 4096, "< ");
        assert!(out.contains("could not decode zstd body"), "{out}");
        let out = render_body(&view(junk, 39, "", "br"), 4096, "< ");
        assert!(out.contains("could not decode br body"), "{out}");
    }

    #[test]
    fn text_sniffing_and_control_characters() {
        let out = render_body(&view(b"{\"a\":1}", 7, "", ""), 4096, "< ");
        assert_eq!(out, "<\n< {\"a\":1}\n");
        // A cut in the middle of a UTF-8 character is still text.
        let s = "héllo".as_bytes();
        let out = render_body(&view(&s[..2], 6, "", ""), 2, "< ");
        assert!(out.contains("… (2 of 6 bytes shown)"), "{out}");
        let out = render_body(&view(b"red \x1b[31m!", 10, "text/plain", ""), 4096, "< ");
        assert_eq!(out, "<\n< red \\u{1b}[31m!\n");
    }
}
