//! Fuzzes the HTTP/1 request and response head parsers. The first byte picks the mode;
//! the rest is the head. Whatever parses used no more bytes than were given (and at most
//! 64 KiB), parses the same from exactly those bytes, and has consistent framing.

#![no_main]

use libfuzzer_sys::fuzz_target;

use interpose::h1::head::{parse_request_head, parse_response_head, Framing, MAX_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, buf)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        match parse_request_head(buf) {
            Ok(Some((head, len))) => {
                assert!(len <= buf.len() && len <= MAX_HEAD_BYTES);
                assert!(
                    !matches!(head.framing, Framing::UntilClose | Framing::Length(0)),
                    "request framing {:?}",
                    head.framing
                );
                let (again, len2) = parse_request_head(&buf[..len])
                    .expect("the head alone parses")
                    .expect("the head alone is complete");
                assert_eq!(len, len2);
                assert_eq!(head.framing, again.framing);
                assert_eq!(head.target, again.target);
            }
            Ok(None) => assert!(buf.len() <= MAX_HEAD_BYTES),
            Err(_) => {}
        }
    } else {
        let is_head = mode & 2 != 0;
        match parse_response_head(buf, is_head) {
            Ok(Some((head, len))) => {
                assert!(len <= buf.len());
                assert!(!matches!(head.framing, Framing::Length(0)));
                if is_head || head.status.is_informational() {
                    assert_eq!(head.framing, Framing::Empty);
                }
                let (again, len2) = parse_response_head(&buf[..len], is_head)
                    .expect("the head alone parses")
                    .expect("the head alone is complete");
                assert_eq!(len, len2);
                assert_eq!(head.framing, again.framing);
            }
            Ok(None) => assert!(buf.len() <= MAX_HEAD_BYTES),
            Err(_) => {}
        }
    }
});
