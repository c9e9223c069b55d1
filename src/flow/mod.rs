//! Flows: each exchange recorded as one value ([`record::Flow`]), the `--filter`
//! expression language that selects them, and the sinks that keep them: one JSON line
//! per flow (`--flows`) and HAR 1.2 documents (`--har`, `interpose har`).
//!
//! Everything here is pure data and conversion; the engine fills flows in as exchanges
//! happen and hands finished ones to the sinks.

pub mod body;
pub mod filter;
pub mod har;
pub mod json_line;
pub mod jsonl;
pub mod record;
pub mod recorder;
pub mod websocket;
