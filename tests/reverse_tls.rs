//! `interpose reverse` TLS termination: curl over HTTP/1.1 and HTTP/2, reqwest over h2,
//! openssl s_client showing ALPN, version and the certificate chosen by SNI,
//! `--min-tls 1.3`, key formats, and the self-signed default.

#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use reverse_support::*;
use support::*;

async fn openssl_s_client(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("openssl")
        .arg("s_client")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn curl_http1_and_http2_with_cacert() {
    let origin = TestOrigin::echo().await;
    let dir = TempDir::new("rev-curl");
    let cert = TestCert::write(dir.path(), "site", &["localhost"]);
    let proxy = TestReverse::start(&[origin.addr.to_string()], |c| {
        c.certs.default = Some(cert.src.clone());
    })
    .await;
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (ok, out, err) = curl(&[
            flag,
            "--cacert",
            cert.cert_path(),
            "--resolve",
            &proxy.resolve(),
            "-w",
            "\nversion=%{http_version} status=%{http_code}",
            &proxy.url("/hello?x=1"),
        ])
        .await;
        assert!(ok, "curl {flag} failed: {err}");
        assert!(out.starts_with("GET /hello?x=1 HTTP/1.1\n"), "{out}");
        assert!(
            out.ends_with(&format!("version={version} status=200")),
            "{out}"
        );
        // The origin saw the client's Host.
        assert!(
            out.contains(&format!("host: localhost:{}", proxy.addr.port())),
            "{out}"
        );
    }
    // Without the CA, curl refuses the certificate: it really is checked.
    let (ok, _, err) = curl(&["--resolve", &proxy.resolve(), &proxy.url("/")]).await;
    assert!(!ok && err.contains("certificate"), "{err}");
}

#[tokio::test]
async fn reqwest_over_h2_streams_bodies() {
    let origin = TestOrigin::echo().await;
    let dir = TempDir::new("rev-reqwest");
    let cert = TestCert::write(dir.path(), "site", &["localhost"]);
    let proxy = TestReverse::start(&[origin.addr.to_string()], |c| {
        c.certs.default = Some(cert.src.clone());
    })
    .await;
    let client = https_client(&cert.pem, proxy.addr);
    let resp = client
        .post(proxy.url("/upload"))
        .body(vec![7u8; 300_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("POST /upload HTTP/1.1\n"), "{text}");
    assert!(text.contains("body: 300000 bytes"), "{text}");
}

#[tokio::test]
async fn s_client_shows_alpn_version_and_sni_certificate() {
    let origin = TestOrigin::echo().await;
    let dir = TempDir::new("rev-sclient");
    let default = TestCert::write(dir.path(), "default", &["localhost"]);
    let api = TestCert::write(dir.path(), "api", &["api.localhost"]);
    let proxy = TestReverse::start(&[origin.addr.to_string()], |c| {
        c.certs.default = Some(default.src.clone());
        c.certs.by_name = vec![("api.localhost".into(), api.src.clone())];
    })
    .await;
    let connect = proxy.addr.to_string();
    let (ok, out) = openssl_s_client(&[
        "-connect",
        &connect,
        "-alpn",
        "h2,http/1.1",
        "-servername",
        "api.localhost",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
    // rcgen's default subject is CN=rcgen self signed cert: compare the leaf itself.
    let shown = leaf_pem(&out);
    assert_eq!(
        shown.trim(),
        api.pem.trim(),
        "SNI api.localhost got another cert"
    );
    let (ok, out) = openssl_s_client(&[
        "-connect",
        &connect,
        "-alpn",
        "http/1.1",
        "-servername",
        "other.localhost",
        "-tls1_2",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    assert!(out.contains("Protocol  : TLSv1.2"), "{out}");
    assert_eq!(leaf_pem(&out).trim(), default.pem.trim());
}

fn leaf_pem(s_client_out: &str) -> String {
    let start = s_client_out
        .find("-----BEGIN CERTIFICATE-----")
        .expect("no certificate shown");
    let end = s_client_out[start..]
        .find("-----END CERTIFICATE-----")
        .unwrap()
        + start;
    format!("{}-----END CERTIFICATE-----\n", &s_client_out[start..end])
}

#[tokio::test]
async fn min_tls_13_refuses_tls_12() {
    let origin = TestOrigin::echo().await;
    let proxy = TestReverse::start(&[origin.addr.to_string()], |c| {
        c.min_tls = interpose::tls::server::MinTls::V13;
    })
    .await;
    let connect = proxy.addr.to_string();
    let (ok, out) = openssl_s_client(&["-connect", &connect, "-tls1_2"]).await;
    assert!(!ok, "TLS 1.2 was accepted: {out}");
    let (ok, out) = openssl_s_client(&["-connect", &connect, "-tls1_3"]).await;
    assert!(ok && out.contains("TLSv1.3"), "{out}");
}

#[tokio::test]
async fn self_signed_default_covers_localhost_and_127_0_0_1() {
    let origin = TestOrigin::echo().await;
    let dir = TempDir::new("rev-self");
    let proxy = TestReverse::start(&[origin.addr.to_string()], |_| {}).await;
    let ca = proxy.self_signed_file(dir.path());
    let ca = ca.to_str().unwrap();
    let ip_url = format!("https://127.0.0.1:{}/ip", proxy.addr.port());
    for url in [proxy.url("/name"), ip_url] {
        let (ok, out, err) = curl(&["--cacert", ca, "--resolve", &proxy.resolve(), &url]).await;
        assert!(ok, "{url}: {err}");
        assert!(out.starts_with("GET /"), "{out}");
    }
    let fp = &proxy.proxy.self_signed().unwrap().fingerprint;
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", ca])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(fp.as_str()));
}

#[tokio::test]
async fn sec1_and_pkcs1_keys_load() {
    let origin = TestOrigin::echo().await;
    let dir = TempDir::new("rev-keys");
    let d = dir.path();
    let sh = |cmd: &str| {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(d)
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
    };
    sh("openssl ecparam -name prime256v1 -genkey -noout -out ec.key 2>/dev/null");
    sh("openssl genrsa -traditional -out rsa.key 2048 2>/dev/null");
    for key in ["ec", "rsa"] {
        sh(&format!(
            "openssl req -x509 -key {key}.key -out {key}.pem -days 2 -subj /CN=localhost \
             -addext subjectAltName=DNS:localhost 2>/dev/null"
        ));
    }
    let first = std::fs::read_to_string(d.join("ec.key")).unwrap();
    assert!(first.contains("BEGIN EC PRIVATE KEY"), "not SEC1: {first}");
    let first = std::fs::read_to_string(d.join("rsa.key")).unwrap();
    assert!(
        first.contains("BEGIN RSA PRIVATE KEY"),
        "not PKCS#1: {first}"
    );
    for key in ["ec", "rsa"] {
        let src = interpose::tls::pem::CertSource {
            cert: d.join(format!("{key}.pem")),
            key: d.join(format!("{key}.key")),
        };
        let proxy =
            TestReverse::start(&[origin.addr.to_string()], |c| c.certs.default = Some(src)).await;
        let cert = d.join(format!("{key}.pem"));
        let (ok, out, err) = curl(&[
            "--cacert",
            cert.to_str().unwrap(),
            "--resolve",
            &proxy.resolve(),
            &proxy.url("/k"),
        ])
        .await;
        assert!(ok && out.starts_with("GET /k"), "{key}: {err}");
    }
}
