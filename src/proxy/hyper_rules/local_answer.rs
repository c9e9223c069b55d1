//! `--map-local` answers: 200 with the file, streamed from disk as the client reads it
//! (never read whole into memory), or 404 / 500 when there is no file or it cannot be
//! read. The client is told no file system path; the log note is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, Take};
use tokio_util::io::ReaderStream;

use super::answer_body::AnswerBody;
use crate::rules::LocalAnswer;

/// Read size per frame.
const CHUNK: usize = 64 * 1024;

/// A file's bytes, exactly as many as its size said when it was opened.
pub struct FileBody {
    stream: ReaderStream<Take<File>>,
    left: u64,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(data))) => {
                this.left = this.left.saturating_sub(data.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            // Shrunk since it was opened: the promised length cannot be kept.
            Poll::Ready(None) if this.left > 0 => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the --map-local file shrank while it was sent",
            )))),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// The answer for a `--map-local` match, and the note for the log when it failed.
/// `head_only`: a HEAD request, answered with the length but no body.
pub async fn local_response<B>(
    answer: LocalAnswer,
    head_only: bool,
) -> (Response<AnswerBody<B>>, Option<String>) {
    let (path, content_type) = match answer {
        LocalAnswer::File { path, content_type } => (path, content_type),
        LocalAnswer::NotFound => {
            let text = "not found: no --map-local file for this URL";
            return (text_response(StatusCode::NOT_FOUND, text), None);
        }
    };
    let opened = async {
        let file = File::open(&path).await?;
        let meta = file.metadata().await?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not a regular file",
            ));
        }
        Ok((file, meta.len()))
    };
    let (file, len) = match opened.await {
        Ok(opened) => opened,
        Err(e) => {
            let note = format!("--map-local: cannot read {}: {e}", path.display());
            let resp = if e.kind() == io::ErrorKind::NotFound {
                let text = "not found: the --map-local file is gone";
                text_response(StatusCode::NOT_FOUND, text)
            } else {
                let text = "internal error: the --map-local file cannot be read";
                text_response(StatusCode::INTERNAL_SERVER_ERROR, text)
            };
            return (resp, Some(note));
        }
    };
    let body = if head_only {
        AnswerBody::text(Full::new(Bytes::new()))
    } else {
        let stream = ReaderStream::with_capacity(file.take(len), CHUNK);
        AnswerBody::File {
            body: FileBody { stream, left: len },
        }
    };
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    (resp, None)
}

/// A one-line text answer of ours.
fn text_response<B>(status: StatusCode, text: &str) -> Response<AnswerBody<B>> {
    let mut resp = Response::new(AnswerBody::text(Full::new(Bytes::from(format!(
        "{text}\n"
    )))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};

    type Answer = Response<AnswerBody<Empty<Bytes>>>;

    #[tokio::test]
    async fn a_file_is_streamed_with_its_length_and_type() {
        let path = std::env::temp_dir().join(format!("local-answer-{}.txt", std::process::id()));
        let data = vec![b'a'; 200_000];
        std::fs::write(&path, &data).unwrap();
        let answer = LocalAnswer::File {
            path: path.clone(),
            content_type: "text/plain",
        };
        let (resp, note): (Answer, _) = local_response(answer.clone(), false).await;
        assert!(note.is_none());
        assert_eq!(resp.headers()[header::CONTENT_LENGTH], "200000");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), data.len());
        let (resp, _): (Answer, _) = local_response(answer.clone(), true).await;
        assert_eq!(resp.headers()[header::CONTENT_LENGTH], "200000");
        assert!(resp.into_body().is_end_stream());
        std::fs::remove_file(&path).unwrap();
        let (resp, note): (Answer, _) = local_response(answer, false).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert!(note.is_some_and(|n| n.contains("cannot read")));
        let (resp, _): (Answer, _) = local_response(LocalAnswer::NotFound, false).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}
