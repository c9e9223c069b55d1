//! WebSocket messages on a flow: one direction's relayed bytes parsed as RFC 6455 frames,
//! as they pass, into messages (fragments joined, control frames on their own, client
//! payloads unmasked), with capped payloads. The bytes themselves are relayed untouched
//! elsewhere; this only looks.

use std::time::Instant;

use super::body::CapturedBody;
use super::record::{Direction, WsMessage};

/// Messages one direction keeps at most; later ones are counted, not kept.
const MAX_MESSAGES: usize = 10_000;

/// A frame header is at most 2 + 8 (length) + 4 (mask key) bytes.
const MAX_HEADER: usize = 14;

/// Parses one direction of a WebSocket as bytes arrive in pieces of any size.
pub struct WsTap {
    direction: Direction,
    started: Instant,
    /// Payload bytes this direction may still keep (shared out over its messages).
    budget: usize,
    header: Vec<u8>,
    frame: Option<Frame>,
    /// The data message being assembled from fragments.
    message: Option<Partial>,
    messages: Vec<WsMessage>,
    /// Messages not kept (over [`MAX_MESSAGES`]).
    dropped: u64,
    /// The bytes stopped making sense as frames: nothing more is parsed.
    broken: bool,
}

/// The frame whose payload is passing.
struct Frame {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    left: u64,
    /// Payload bytes of this frame seen so far (for the mask's offset).
    seen: u64,
    /// A control frame in the middle of a fragmented message is its own message.
    control: Option<Partial>,
}

/// A message being collected.
struct Partial {
    opcode: u8,
    at: f64,
    kept: Vec<u8>,
    size: u64,
}

impl WsTap {
    /// A tap for one direction; its messages keep at most `budget` payload bytes in all.
    pub fn new(direction: Direction, started: Instant, budget: usize) -> Self {
        WsTap {
            direction,
            started,
            budget,
            header: Vec::with_capacity(MAX_HEADER),
            frame: None,
            message: None,
            messages: Vec::new(),
            dropped: 0,
            broken: false,
        }
    }

    /// Looks at the next bytes of this direction.
    pub fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.broken {
            if self.frame.is_none() {
                data = self.read_header(data);
                continue;
            }
            data = self.read_payload(data);
        }
    }

    /// The messages seen, in order, and how many were not kept.
    pub fn finish(self) -> (Vec<WsMessage>, u64) {
        (self.messages, self.dropped)
    }

    /// Takes header bytes until a whole header is known; returns the rest.
    fn read_header<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let need = header_len(&self.header).unwrap_or(2);
        let take = need.saturating_sub(self.header.len()).min(data.len());
        let (head, rest) = data.split_at(take);
        self.header.extend_from_slice(head);
        match header_len(&self.header) {
            Some(n) if self.header.len() == n => {
                self.start_frame();
                self.header.clear();
            }
            _ => {}
        }
        rest
    }

    fn start_frame(&mut self) {
        let Some(frame) = parse_header(&self.header) else {
            self.broken = true;
            return;
        };
        let at = self.started.elapsed().as_secs_f64() * 1000.0;
        let mut frame = frame;
        if frame.opcode >= 8 {
            frame.control = Some(Partial::new(frame.opcode, at));
        } else if frame.opcode != 0 {
            // A new data message (one still open is abandoned: the peer broke the rules).
            self.message = Some(Partial::new(frame.opcode, at));
        } else if self.message.is_none() {
            self.broken = true;
            return;
        }
        let empty = frame.left == 0;
        self.frame = Some(frame);
        if empty {
            self.end_frame();
        }
    }

    fn read_payload<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let Some(frame) = self.frame.as_mut() else {
            return data;
        };
        let take = usize::try_from(frame.left)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let (payload, rest) = data.split_at(take);
        let target = match frame.control.as_mut() {
            Some(control) => control,
            None => match self.message.as_mut() {
                Some(message) => message,
                None => {
                    self.broken = true;
                    return rest;
                }
            },
        };
        target.size += payload.len() as u64;
        let room = self.budget.min(payload.len());
        if let Some(kept) = payload.get(..room) {
            let offset = frame.seen;
            target.kept.extend(kept.iter().enumerate().map(|(i, b)| {
                let pos = (offset + i as u64) % 4;
                frame.mask.map_or(*b, |m| b ^ m[pos as usize])
            }));
            self.budget -= room;
        }
        frame.seen += payload.len() as u64;
        frame.left -= payload.len() as u64;
        if frame.left == 0 {
            self.end_frame();
        }
        rest
    }

    fn end_frame(&mut self) {
        let Some(frame) = self.frame.take() else {
            return;
        };
        if let Some(control) = frame.control {
            self.push(control);
        } else if frame.fin {
            if let Some(message) = self.message.take() {
                self.push(message);
            }
        }
    }

    fn push(&mut self, done: Partial) {
        if self.messages.len() >= MAX_MESSAGES {
            self.dropped += 1;
            return;
        }
        let payload = CapturedBody::from_capture(&done.kept, done.size);
        self.messages.push(WsMessage {
            direction: self.direction,
            opcode: done.opcode,
            at: done.at,
            payload,
        });
    }
}

impl Partial {
    fn new(opcode: u8, at: f64) -> Self {
        Partial {
            opcode,
            at,
            kept: Vec::new(),
            size: 0,
        }
    }
}

/// The whole header's length once its first two bytes are known.
fn header_len(header: &[u8]) -> Option<usize> {
    let second = *header.get(1)?;
    let len = match second & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    Some(len + if second & 0x80 != 0 { 4 } else { 0 })
}

/// A complete header; `None` for what no WebSocket peer sends (reserved opcodes, a
/// fragmented or oversized control frame, a length with its top bit set).
fn parse_header(header: &[u8]) -> Option<Frame> {
    let first = *header.first()?;
    let second = *header.get(1)?;
    let (fin, opcode) = (first & 0x80 != 0, first & 0x0f);
    if matches!(opcode, 3..=7 | 11..=15) {
        return None;
    }
    let (left, rest) = match second & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(header.get(2..4)?.try_into().ok()?)),
            header.get(4..)?,
        ),
        127 => {
            let n = u64::from_be_bytes(header.get(2..10)?.try_into().ok()?);
            if n >> 63 != 0 {
                return None;
            }
            (n, header.get(10..)?)
        }
        n => (u64::from(n), header.get(2..)?),
    };
    if opcode >= 8 && (!fin || left > 125) {
        return None;
    }
    let mask = if second & 0x80 != 0 {
        Some(rest.get(..4)?.try_into().ok()?)
    } else {
        None
    };
    Some(Frame {
        fin,
        opcode,
        mask,
        left,
        seen: 0,
        control: None,
    })
}

/// Both directions of one WebSocket.
pub struct WsTaps {
    pub to_server: WsTap,
    pub to_client: WsTap,
}

impl WsTaps {
    /// Taps whose payloads keep at most `budget` bytes per direction.
    pub fn new(started: Instant, budget: usize) -> Self {
        WsTaps {
            to_server: WsTap::new(Direction::ClientToServer, started, budget),
            to_client: WsTap::new(Direction::ServerToClient, started, budget),
        }
    }

    /// Every message, both ways, in the order they began; and how many were not kept.
    pub fn finish(self) -> (Vec<WsMessage>, u64) {
        let (mut all, a) = self.to_server.finish();
        let (down, b) = self.to_client.finish();
        all.extend(down);
        all.sort_by(|x, y| x.at.total_cmp(&y.at));
        (all, a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a peer sends it (masked when `mask` is given).
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let mbit = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mbit | n as u8),
            n if n <= 0xffff => {
                out.push(mbit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mbit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(m) => {
                out.extend_from_slice(&m);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn tap() -> WsTap {
        WsTap::new(Direction::ClientToServer, Instant::now(), 1 << 20)
    }

    #[test]
    fn masked_fragmented_and_control_frames_become_messages_in_any_pieces() {
        let key = Some([1, 2, 3, 4]);
        let mut wire = frame(false, 1, b"hel", key);
        wire.extend(frame(true, 9, b"ping!", key));
        wire.extend(frame(true, 0, b"lo world", key));
        let big = vec![7u8; 70_000];
        wire.extend(frame(true, 2, &big, key));
        wire.extend(frame(true, 8, &[3, 232], key));
        for step in [1, 3, 7, 1000, wire.len()] {
            let mut t = tap();
            for piece in wire.chunks(step) {
                t.observe(piece);
            }
            let (messages, dropped) = t.finish();
            assert_eq!(dropped, 0);
            let seen: Vec<(u8, &[u8])> = messages
                .iter()
                .map(|m| (m.opcode, m.payload.bytes.as_slice()))
                .collect();
            assert_eq!(
                seen,
                vec![
                    (9, &b"ping!"[..]),
                    (1, &b"hello world"[..]),
                    (2, &big[..]),
                    (8, &[3, 232][..]),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn payloads_are_capped_but_sizes_counted() {
        let mut t = WsTap::new(Direction::ServerToClient, Instant::now(), 10);
        t.observe(&frame(true, 1, b"0123456789abcdef", None));
        t.observe(&frame(true, 1, b"more", None));
        let (messages, _) = t.finish();
        assert_eq!(messages[0].payload.bytes, b"0123456789");
        assert_eq!(
            (messages[0].payload.size, messages[0].payload.truncated),
            (16, true)
        );
        assert!(messages[1].payload.bytes.is_empty());
        assert_eq!(messages[1].payload.size, 4);
    }

    #[test]
    fn nonsense_stops_the_parse_without_harm() {
        for junk in [
            &[0x83, 0x00][..],                            // reserved opcode
            &[0x09, 0x00][..],                            // fragmented control frame
            &[0x80, 0x00][..],                            // continuation with nothing to continue
            &[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0][..], // length with the top bit set
        ] {
            let mut t = tap();
            t.observe(junk);
            t.observe(&frame(true, 1, b"after", None));
            let (messages, _) = t.finish();
            assert!(messages.is_empty(), "{junk:?}: {}", messages.len());
        }
    }

    #[test]
    fn both_directions_merge_in_time_order() {
        let start = Instant::now();
        let mut taps = WsTaps::new(start, 100);
        taps.to_server
            .observe(&frame(true, 1, b"a", Some([9, 9, 9, 9])));
        std::thread::sleep(std::time::Duration::from_millis(2));
        taps.to_client.observe(&frame(true, 1, b"b", None));
        let (all, _) = taps.finish();
        let order: Vec<Direction> = all.iter().map(|m| m.direction).collect();
        assert_eq!(
            order,
            vec![Direction::ClientToServer, Direction::ServerToClient]
        );
        assert_eq!(all[0].payload.bytes, b"a");
    }
}
