//! Fuzzes the first-bytes classifier of a CONNECT tunnel (TLS ClientHello with its SNI
//! name, plain HTTP, or other). Any bytes give an answer, never a panic; a name found
//! is a plausible lowercase DNS name; once an answer is final, more bytes keep it final.

#![no_main]

use libfuzzer_sys::fuzz_target;

use interpose::proxy::peek::{classify, FirstBytes};

fuzz_target!(|data: &[u8]| {
    let answer = classify(data);
    if let FirstBytes::TlsClientHello { sni: Some(name) } = &answer {
        assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'-' | b'.' | b'_')),
            "{name:?}"
        );
    }
    if data.is_empty() {
        assert_eq!(answer, FirstBytes::NeedMore);
    }
    // A final answer on a prefix must be the answer for the whole: the proxy decides on
    // the bytes it has peeked so far, and more bytes must not change its mind.
    for cut in [
        1,
        2,
        5,
        9,
        16,
        17,
        data.len() / 2,
        data.len().saturating_sub(1),
    ] {
        if cut == 0 || cut >= data.len() {
            continue;
        }
        let earlier = classify(&data[..cut]);
        if earlier != FirstBytes::NeedMore {
            assert_eq!(earlier, answer, "prefix of {cut} bytes");
        }
    }
});
