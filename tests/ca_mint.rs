//! Minted leaves as openssl sees them (SAN DNS vs IP, CN, issuer, validity, EKU,
//! chain), and the cache: one mint for 100 concurrent first requests, LRU eviction.

#[path = "ca_common.rs"]
mod common;

use std::sync::Arc;

use common::{openssl, write_leaf, Scratch};
use interpose::ca::{mint_leaf, Ca, CaStore, LeafCache};

fn new_ca(s: &Scratch) -> (Ca, std::path::PathBuf) {
    let store = CaStore::new(s.path("ca"));
    (store.init().unwrap(), store.cert_path())
}

fn leaf_text(s: &Scratch, ca: &Ca, ca_pem: &std::path::Path, host: &str) -> String {
    let leaf = mint_leaf(ca, host).unwrap();
    assert_eq!(leaf.cert.len(), 2, "chain is leaf + CA");
    assert_eq!(leaf.cert[1], *ca.cert_der());
    let pem = write_leaf(&s.0, "leaf.pem", &leaf);
    let verify = openssl(
        &s.0,
        &[
            "verify",
            "-CAfile",
            ca_pem.to_str().unwrap(),
            "-purpose",
            "sslserver",
            pem.to_str().unwrap(),
        ],
    );
    assert!(verify.contains(": OK"), "{verify}");
    openssl(&s.0, &["x509", "-noout", "-text", "-in", "leaf.pem"])
}

#[test]
fn a_name_gets_a_dns_san_and_a_short_validity() {
    let s = Scratch::new("mint-dns");
    let (ca, ca_pem) = new_ca(&s);
    let text = leaf_text(&s, &ca, &ca_pem, "Example.ORG");
    assert!(text.contains("DNS:example.org"), "{text}");
    assert!(!text.contains("IP Address"), "{text}");
    assert!(text.contains("Subject: CN = example.org"), "{text}");
    assert!(text.contains("Issuer: CN = interpose CA"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(!text.contains("CA:TRUE"), "{text}");

    // Validity from one day back to at most 180 days ahead.
    let der = std::fs::read_to_string(s.path("leaf.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(der.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    assert!(
        now - not_before >= time::Duration::hours(23),
        "{not_before}"
    );
    assert!(
        now - not_before <= time::Duration::hours(25),
        "{not_before}"
    );
    assert!(not_after - now <= time::Duration::days(180), "{not_after}");
    assert!(not_after - now >= time::Duration::days(170), "{not_after}");
}

#[test]
fn an_address_gets_an_ip_san_never_a_dns_one() {
    let s = Scratch::new("mint-ip");
    let (ca, ca_pem) = new_ca(&s);
    let text = leaf_text(&s, &ca, &ca_pem, "127.0.0.1");
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    assert!(!text.contains("DNS:"), "{text}");
    let text = leaf_text(&s, &ca, &ca_pem, "[::1]");
    assert!(text.contains("IP Address:0:0:0:0:0:0:0:1"), "{text}");
    assert!(!text.contains("DNS:"), "{text}");
}

#[test]
fn leaves_share_one_key_but_not_serials() {
    let s = Scratch::new("mint-serial");
    let (ca, _) = new_ca(&s);
    let a = mint_leaf(&ca, "a.test").unwrap();
    let b = mint_leaf(&ca, "b.test").unwrap();
    assert!(Arc::ptr_eq(&a.key, &b.key), "one leaf key for all leaves");
    let serial = |der: &[u8]| {
        let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
        c.raw_serial().to_vec()
    };
    assert_ne!(serial(&a.cert[0]), serial(&b.cert[0]));
    assert!(a.keys_match().is_ok());
}

#[test]
fn a_bad_host_is_an_error_not_a_certificate() {
    let s = Scratch::new("mint-bad");
    let (ca, _) = new_ca(&s);
    for host in ["", "exa mple.org", "a..b", "bad_host\u{0}"] {
        let err = mint_leaf(&ca, host).unwrap_err();
        assert!(err.to_string().contains("cannot mint"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_first_requests_mint_once() {
    let s = Scratch::new("mint-flight");
    let (ca, _) = new_ca(&s);
    let cache = Arc::new(LeafCache::new(Arc::new(ca), 100));
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, barrier) = (Arc::clone(&cache), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                cache.leaf_async("new.example").await.unwrap()
            })
        })
        .collect();
    let mut leaves = Vec::new();
    for t in tasks {
        leaves.push(t.await.unwrap());
    }
    assert_eq!(cache.mint_count(), 1);
    assert!(leaves.iter().all(|l| Arc::ptr_eq(l, &leaves[0])));

    // The synchronous path (what the rustls resolver uses) from 100 threads, too.
    let barrier = Arc::new(std::sync::Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (cache, barrier) = (Arc::clone(&cache), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                cache.leaf("other.example").unwrap()
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(cache.mint_count(), 2);
    // Case and a trailing dot do not make a new host.
    cache.leaf("NEW.example.").unwrap();
    assert_eq!(cache.mint_count(), 2);
}

#[test]
fn the_least_recently_used_host_is_evicted() {
    let s = Scratch::new("mint-lru");
    let (ca, _) = new_ca(&s);
    let cache = LeafCache::new(Arc::new(ca), 3);
    for h in ["a.test", "b.test", "c.test"] {
        cache.leaf(h).unwrap();
    }
    cache.leaf("a.test").unwrap(); // a is now the most recent; b the least.
    assert_eq!(cache.mint_count(), 3);
    cache.leaf("d.test").unwrap();
    assert_eq!(cache.len(), 3);
    assert!(cache.cached("b.test").is_none(), "b was evicted");
    assert!(cache.cached("a.test").is_some());
    cache.leaf("b.test").unwrap();
    assert_eq!(cache.mint_count(), 5, "an evicted host is minted again");
}

#[test]
fn a_failed_mint_is_not_cached() {
    let s = Scratch::new("mint-fail");
    let (ca, _) = new_ca(&s);
    let cache = LeafCache::new(Arc::new(ca), 10);
    assert!(cache.leaf("bad host").is_err());
    assert!(cache.leaf("bad host").is_err());
    assert_eq!(cache.mint_count(), 2);
    assert!(cache.is_empty());
}
