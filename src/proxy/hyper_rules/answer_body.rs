//! The bodies an exchange under rewrite rules can carry on the hyper-based paths: the
//! peer's stream as it comes, a text of ours, a local file, or a body that was buffered
//! for `--modify-body` (whole, or a consumed prefix followed by the rest of the stream).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use super::local_answer::FileBody;
use crate::h1::writer::BoxError;

pin_project! {
    /// What is sent on, by where it comes from. `Streamed` is the only case without
    /// rules, and costs one match per frame.
    #[project = AnswerProj]
    pub enum AnswerBody<B> {
        /// The peer's body, passed through as it streams.
        Streamed { #[pin] body: B },
        /// A text of ours (an error or a refusal), held whole.
        Text { #[pin] body: Full<Bytes> },
        /// A `--map-local` file, read from disk as it is sent.
        File { #[pin] body: FileBody },
        /// A body read for `--modify-body`.
        Spliced { #[pin] body: Spliced<B> },
    }
}

impl<B> AnswerBody<B> {
    pub fn streamed(body: B) -> Self {
        AnswerBody::Streamed { body }
    }

    pub fn text(body: Full<Bytes>) -> Self {
        AnswerBody::Text { body }
    }
}

impl<B> Body for AnswerBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            AnswerProj::Streamed { body } => body.poll_frame(cx).map_err(Into::into),
            AnswerProj::Text { body } => body.poll_frame(cx).map_err(|never| match never {}),
            AnswerProj::File { body } => body.poll_frame(cx).map_err(Into::into),
            AnswerProj::Spliced { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AnswerBody::Streamed { body } => body.is_end_stream(),
            AnswerBody::Text { body } => body.is_end_stream(),
            AnswerBody::File { body } => body.is_end_stream(),
            AnswerBody::Spliced { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AnswerBody::Streamed { body } => body.size_hint(),
            AnswerBody::Text { body } => body.size_hint(),
            AnswerBody::File { body } => body.size_hint(),
            AnswerBody::Spliced { body } => body.size_hint(),
        }
    }
}

/// A body put back together after it was read for `--modify-body`: the bytes read (or
/// rewritten), then the rest of the stream if reading stopped at the cap, or else the
/// trailers the stream ended with.
pub struct Spliced<B> {
    prefix: Option<Bytes>,
    rest: Option<Pin<Box<B>>>,
    trailers: Option<HeaderMap>,
}

impl<B> Spliced<B> {
    /// A body read whole: `data`, then its trailers if it had some.
    pub fn whole(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Spliced {
            prefix: Some(data).filter(|d| !d.is_empty()),
            rest: None,
            trailers,
        }
    }

    /// A body read only in part: `prefix` was consumed from `rest`, which follows it.
    pub fn resumed(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        Spliced {
            prefix: Some(prefix).filter(|d| !d.is_empty()),
            rest: Some(rest),
            trailers: None,
        }
    }
}

impl<B> Body for Spliced<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Every field is Unpin (the stream is boxed).
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(rest) = this.rest.as_mut() {
            return rest.as_mut().poll_frame(cx).map_err(Into::into);
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let inner = match &self.rest {
            Some(rest) => rest.size_hint(),
            None => SizeHint::with_exact(0),
        };
        let mut hint = SizeHint::new();
        // Upper first: `set_lower` panics above it (lower <= upper holds for the inner).
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(prefix));
        }
        hint.set_lower(inner.lower().saturating_add(prefix));
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_resumed_body_is_the_prefix_then_the_rest() {
        let rest = Box::pin(Full::new(Bytes::from_static(b" world")));
        let body = Spliced::resumed(Bytes::from_static(b"hello"), rest);
        assert_eq!(body.size_hint().exact(), Some(11));
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"hello world");
    }

    #[tokio::test]
    async fn a_whole_body_keeps_its_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body: Spliced<Full<Bytes>> = Spliced::whole(Bytes::from_static(b"x"), Some(trailers));
        assert!(!body.is_end_stream());
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().map(|t| t.len()), Some(1));
        assert_eq!(&collected.to_bytes()[..], b"x");
        let empty: Spliced<Full<Bytes>> = Spliced::whole(Bytes::new(), None);
        assert!(empty.is_end_stream());
    }
}
