//! A body as a flow records it: the first bytes as captured (up to `--capture-max-body`),
//! how many crossed the wire in all, and whether the capture was cut. Serialized as text
//! when the bytes are UTF-8, as base64 otherwise, so a JSON line round-trips exactly.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The default for `--capture-max-body`: 1 MiB of each body is kept.
pub const DEFAULT_CAPTURE_MAX_BODY: usize = 1024 * 1024;

/// A captured body: `bytes` are the first bytes as they crossed the wire (still in their
/// `Content-Encoding`), `size` counts all of them, `truncated` says the capture was cut.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BodyRepr")]
pub struct CapturedBody {
    pub bytes: Vec<u8>,
    /// Body bytes that crossed the wire, captured or not.
    pub size: u64,
    /// Fewer bytes were kept than crossed the wire.
    pub truncated: bool,
}

impl CapturedBody {
    /// An empty body (none was sent, or none has arrived yet).
    pub fn empty() -> Self {
        Self::default()
    }

    /// A body whose first bytes `kept` were captured out of `total` that crossed the wire,
    /// as a streaming tap (`BodyCapture`) reports them.
    pub fn from_capture(kept: &[u8], total: u64) -> Self {
        let total = total.max(kept.len() as u64);
        CapturedBody {
            bytes: kept.to_vec(),
            size: total,
            truncated: (kept.len() as u64) < total,
        }
    }

    /// A whole body known at once, of which at most `max` bytes are kept.
    pub fn capped(body: &[u8], max: usize) -> Self {
        let kept = body.get(..max.min(body.len())).unwrap_or_default();
        Self::from_capture(kept, body.len() as u64)
    }

    /// The captured bytes as text, if they are UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }
}

/// Written as [`BodyRepr`] reads it, without copying the bytes first.
impl Serialize for CapturedBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if !self.bytes.is_empty() {
            match std::str::from_utf8(&self.bytes) {
                Ok(text) => map.serialize_entry("text", text)?,
                Err(_) => map.serialize_entry("base64", &BASE64.encode(&self.bytes))?,
            }
        }
        map.serialize_entry("size", &self.size)?;
        map.serialize_entry("truncated", &self.truncated)?;
        map.end()
    }
}

/// The JSON shape of a body: `{"text": ..}` or `{"base64": ..}`, `size`, `truncated`.
#[derive(Deserialize)]
struct BodyRepr {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    base64: Option<String>,
    size: u64,
    #[serde(default)]
    truncated: bool,
}

impl TryFrom<BodyRepr> for CapturedBody {
    type Error = String;

    fn try_from(repr: BodyRepr) -> Result<Self, String> {
        let bytes = match (repr.text, repr.base64) {
            (Some(_), Some(_)) => return Err("a body has both text and base64".into()),
            (Some(text), None) => text.into_bytes(),
            (None, Some(b64)) => BASE64
                .decode(b64.as_bytes())
                .map_err(|e| format!("a body's base64 is invalid: {e}"))?,
            (None, None) => Vec::new(),
        };
        Ok(CapturedBody {
            size: repr.size.max(bytes.len() as u64),
            bytes,
            truncated: repr.truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_text_and_binary_is_base64() {
        let text = CapturedBody::capped(b"hello", 100);
        let json = serde_json::to_string(&text).unwrap();
        assert_eq!(json, r#"{"text":"hello","size":5,"truncated":false}"#);
        let binary = CapturedBody::capped(&[0xff, 0x00, 0x01], 100);
        let json = serde_json::to_string(&binary).unwrap();
        assert_eq!(json, r#"{"base64":"/wAB","size":3,"truncated":false}"#);
        for body in [text, binary, CapturedBody::empty()] {
            let json = serde_json::to_string(&body).unwrap();
            assert_eq!(serde_json::from_str::<CapturedBody>(&json).unwrap(), body);
        }
    }

    #[test]
    fn a_large_body_is_cut_and_marked() {
        let body = CapturedBody::capped(b"0123456789", 4);
        assert_eq!(body.bytes, b"0123");
        assert_eq!((body.size, body.truncated), (10, true));
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(json, r#"{"text":"0123","size":10,"truncated":true}"#);
        let tapped = CapturedBody::from_capture(b"ab", 2);
        assert!(!tapped.truncated);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let both = r#"{"text":"a","base64":"YQ==","size":1}"#;
        assert!(serde_json::from_str::<CapturedBody>(both).is_err());
        let bad = r#"{"base64":"!!","size":1}"#;
        assert!(serde_json::from_str::<CapturedBody>(bad).is_err());
    }
}
