//! Reading a body for `--modify-body`, up to a cap: whole (with its trailers), or, past
//! the cap, the bytes read so far and the stream they were read from, so that the body
//! can still be passed on unmodified. Memory is the cap plus one frame.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;

/// What reading found.
pub enum CappedRead<B> {
    /// The whole body, and the trailers it ended with.
    Whole {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// More than the cap: `prefix` was read from `rest`, which is not finished.
    Over { prefix: Bytes, rest: Pin<Box<B>> },
}

/// Reads `body` until it ends or more than `cap` bytes came.
pub async fn read_capped<B>(body: B, cap: usize) -> Result<CappedRead<B>, B::Error>
where
    B: Body<Data = Bytes>,
{
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    let mut body = Box::pin(body);
    let mut buf = BytesMut::with_capacity(declared.min(cap));
    while let Some(frame) = body.frame().await {
        let frame = match frame?.into_data() {
            Ok(data) => {
                let over = buf.len().saturating_add(data.len()) > cap;
                buf.extend_from_slice(&data);
                if over {
                    return Ok(CappedRead::Over {
                        prefix: buf.freeze(),
                        rest: body,
                    });
                }
                continue;
            }
            Err(frame) => frame,
        };
        // Trailers end a body.
        if let Ok(trailers) = frame.into_trailers() {
            return Ok(CappedRead::Whole {
                data: buf.freeze(),
                trailers: Some(trailers),
            });
        }
    }
    Ok(CappedRead::Whole {
        data: buf.freeze(),
        trailers: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn a_body_under_the_cap_is_read_whole() {
        let body = Full::new(Bytes::from_static(b"hello"));
        match read_capped(body, 5).await.unwrap() {
            CappedRead::Whole { data, trailers } => {
                assert_eq!(&data[..], b"hello");
                assert!(trailers.is_none());
            }
            CappedRead::Over { .. } => panic!("over"),
        }
    }

    #[tokio::test]
    async fn a_body_over_the_cap_stops_with_the_rest_unread() {
        let frames = ["abc", "def", "ghi"]
            .map(|s| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(s))));
        let body = StreamBody::new(futures_util::stream::iter(frames));
        match read_capped(body, 4).await.unwrap() {
            CappedRead::Over { prefix, rest } => {
                assert_eq!(&prefix[..], b"abcdef");
                let rest = rest.collect().await.unwrap().to_bytes();
                assert_eq!(&rest[..], b"ghi");
            }
            CappedRead::Whole { .. } => panic!("whole"),
        }
    }
}
