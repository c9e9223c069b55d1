//! Minting cost: one leaf for a new host (a CA signature; P-256 and RSA-3072 CAs),
//! a cache hit, and the resident memory of a cache holding 10,000 hosts.

use std::hint::black_box;
use std::sync::Arc;

use criterion::Criterion;
use interpose::ca::{mint_leaf, Ca, CaStore, LeafCache, DEFAULT_CAPACITY};

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("interpose-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn our_ca() -> Ca {
    CaStore::new(scratch("ca")).init().expect("create CA")
}

/// An RSA-3072 CA like mkcert's, written by rcgen and loaded like a user's.
fn rsa_ca() -> Ca {
    let dir = scratch("rsa");
    std::fs::create_dir_all(&dir).expect("dir");
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        .expect("RSA key");
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench RSA CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let cert = params.self_signed(&key).expect("self-sign");
    std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write");
    let key_path = dir.join("ca-key.pem");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    interpose::ca::load::load_pair(&dir.join("ca.pem"), &key_path).expect("load RSA CA")
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Fills a default-sized cache and prints how much resident memory it took.
fn rss_with_full_cache() {
    let cache = LeafCache::new(Arc::new(our_ca()), DEFAULT_CAPACITY);
    let before = vm_rss_kib();
    let started = std::time::Instant::now();
    for i in 0..DEFAULT_CAPACITY {
        cache.leaf(&format!("host-{i}.example.org")).expect("mint");
    }
    let elapsed = started.elapsed();
    let after = vm_rss_kib();
    println!(
        "cache of {} hosts: VmRSS {} KiB -> {} KiB (+{} KiB, {:.0} B/host); filled in {:?}",
        cache.len(),
        before,
        after,
        after.saturating_sub(before),
        (after.saturating_sub(before) * 1024) as f64 / cache.len() as f64,
        elapsed
    );
}

fn benches(c: &mut Criterion) {
    let ca = our_ca();
    c.bench_function("mint_leaf P-256 CA (cache miss)", |b| {
        b.iter(|| mint_leaf(&ca, black_box("www.example.org")).expect("mint"))
    });
    let rsa = rsa_ca();
    c.bench_function("mint_leaf RSA-3072 CA (cache miss)", |b| {
        b.iter(|| mint_leaf(&rsa, black_box("www.example.org")).expect("mint"))
    });
    let cache = LeafCache::new(Arc::new(ca), DEFAULT_CAPACITY);
    cache.leaf("www.example.org").expect("mint");
    c.bench_function("LeafCache::leaf (cache hit)", |b| {
        b.iter(|| cache.leaf(black_box("www.example.org")).expect("hit"))
    });
}

fn main() {
    rss_with_full_cache();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    let _ = std::fs::remove_dir_all(scratch("ca"));
    let _ = std::fs::remove_dir_all(scratch("rsa"));
}
