//! TLS plumbing shared by the modes that terminate TLS: PEM loading, the server-side
//! certificate store (SNI selection, reload, self-signed default) and the crypto
//! provider every rustls config is built with.

pub mod client;
pub mod pem;
pub mod selfsigned;
pub mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The aws-lc-rs provider, chosen explicitly: with both aws-lc-rs and ring linked
/// into a build, rustls cannot pick a process-wide default by itself.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What a client's TLS with us agreed, for flows: we terminated it (`intercepted`).
pub fn session_facts(session: &rustls::ServerConnection) -> crate::flow::record::TlsFacts {
    crate::flow::record::TlsFacts {
        sni: session.server_name().map(str::to_string),
        version: session.protocol_version().map(version_name),
        alpn: session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        intercepted: true,
    }
}

/// `TLSv1.3`, as Wireshark and HAR viewers spell it.
fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}
