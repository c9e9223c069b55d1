mod support;
use support::*;

#[tokio::test]
async fn forward_get_through_reqwest() {
    let origin = TestOrigin::echo().await;
    let proxy = TestProxy::start().await;
    let body = client_via(&proxy)
        .get(origin.url("/x"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("GET /x HTTP/1.1"), "{body}");
    let tls = TlsOrigin::start().await;
    let dir = TempDir::new("smoke");
    let ca = tls.cert_file(dir.path());
    let url = format!("https://localhost:{}/t", tls.addr.port());
    let (ok, out, err) = curl(&["-x", &proxy.url(), "--cacert", ca.to_str().unwrap(), &url]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("tls echo GET /t"), "{out}");
}
