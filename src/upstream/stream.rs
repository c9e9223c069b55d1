//! The connections the engine talks to origins over: plain TCP, or TLS over TCP.
//! One trait lets the exchange code and the pool serve both without boxing.

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A connection to an origin that can be split for full-duplex use and pooled.
pub trait UpstreamIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Read<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    type Write<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;

    /// Read and write halves borrowed for one exchange.
    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>);

    /// The TCP socket underneath, for readiness checks on idle connections.
    fn tcp(&self) -> &TcpStream;
}

impl UpstreamIo for TcpStream {
    type Read<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Write<'a> = tokio::net::tcp::WriteHalf<'a>;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        self.split()
    }

    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl UpstreamIo for TlsStream<TcpStream> {
    type Read<'a> = ReadHalf<&'a mut TlsStream<TcpStream>>;
    type Write<'a> = WriteHalf<&'a mut TlsStream<TcpStream>>;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        tokio::io::split(self)
    }

    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}
