//! Our HTTP/1 server side: strict request-head parsing (on httparse), body decoding
//! and response writing. Owning this layer lets the proxy refuse every ambiguous
//! message before a byte of it reaches an origin, and answer with a reason.

pub mod head;
pub mod reader;
pub mod writer;
