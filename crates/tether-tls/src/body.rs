//! Request bodies from the network: an inactivity deadline on every body ([`ReadTimeoutBody`],
//! the `[http] body_read_timeout`), and reading a body whole up to a limit ([`read_limited`]),
//! which answers "too large" only after reading and discarding a bounded amount of the rest.
//!
//! Why discard: a server that answers 413 without reading the body closes an HTTP/1.1
//! connection with unread data (the kernel then resets it, and the client may lose the answer)
//! or resets an HTTP/2 stream (`RST_STREAM(NO_ERROR)`, which curl 7.88 reports as a framing error
//! instead of showing the answer). Like nginx's lingering close, a few MiB or a couple of seconds
//! are read first, so that common clients see the 413.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn StdError + Send + Sync>;

/// At most this much of an unwanted body is read and discarded before answering.
pub const DRAIN_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// ... and for at most this long.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// The error of a body that received nothing for the body read timeout.
#[derive(Debug)]
pub struct BodyReadTimeout(pub Duration);

impl std::fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no part of the request body arrived for {} s", self.0.as_secs())
    }
}

impl StdError for BodyReadTimeout {}

/// Whether `e`, or an error it wraps, is a [`BodyReadTimeout`].
pub fn is_read_timeout(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(x) = cur {
        if x.is::<BodyReadTimeout>() {
            return true;
        }
        cur = x.source();
    }
    false
}

/// A body that fails with [`BodyReadTimeout`] when it is waited on and nothing arrives for
/// `timeout`. The clock runs only while someone waits for the body, and restarts with every
/// frame: a slow but steady upload is never cut off. Length and end-of-stream are passed through,
/// so a proxied request keeps its framing.
pub struct ReadTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<B> ReadTimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        ReadTimeoutBody { inner, timeout, sleep: None, armed: false }
    }
}

impl<B> HttpBody for ReadTimeoutBody<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = Instant::now() + this.timeout;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !this.armed {
            sleep.as_mut().reset(deadline);
            this.armed = true;
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyReadTimeout(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum ReadError {
    /// Longer than the limit (declared or sent); a bounded part of the rest was discarded.
    TooLarge,
    /// Nothing arrived for the body read timeout.
    TimedOut,
    /// The client went away or sent a broken body.
    Failed(BoxError),
}

/// Read `body` whole if it is at most `limit` bytes. Over the limit, read and discard up to
/// [`DRAIN_MAX_BYTES`] / [`DRAIN_MAX_TIME`] of the rest before returning
/// [`ReadError::TooLarge`] — unless `drain` is false (a client that sent
/// `Expect: 100-continue` has not sent the body and waits for an answer first).
pub async fn read_limited<B>(mut body: B, limit: usize, drain: bool) -> Result<Bytes, ReadError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() > limit as u64 {
        if drain {
            discard(&mut body).await;
        }
        return Err(ReadError::TooLarge);
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| classify(e.into()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                if drain {
                    discard(&mut body).await;
                }
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

fn classify(e: BoxError) -> ReadError {
    if is_read_timeout(&*e) { ReadError::TimedOut } else { ReadError::Failed(e) }
}

/// Read and drop what is left of `body`, bounded by [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`].
/// Returns whether the body ended.
pub async fn discard<B>(body: &mut B) -> bool
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    let read = async {
        let mut n: u64 = 0;
        while n <= DRAIN_MAX_BYTES {
            match body.frame().await {
                None => return true,
                Some(Ok(f)) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Some(Err(_)) => return false,
            }
        }
        false
    };
    tokio::time::timeout(DRAIN_MAX_TIME, read).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    /// A body whose chunks arrive after the given delays (milliseconds).
    struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunks(parts: Vec<(u64, &'static [u8])>) -> Chunks {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for (ms, d) in parts {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if tx.send(Bytes::from_static(d)).await.is_err() {
                    return;
                }
            }
        });
        Chunks(rx)
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_is_for_silence_not_a_total() {
        // Six chunks 400 ms apart: 2.4 s in all, never 1 s of silence.
        let steady = chunks(vec![(400, b"a"); 6]);
        let got = read_limited(ReadTimeoutBody::new(steady, Duration::from_secs(1)), 100, true).await.unwrap();
        assert_eq!(got.len(), 6);
        // One chunk, then silence.
        let stalled = chunks(vec![(10, b"a"), (5_000, b"b")]);
        let err = read_limited(ReadTimeoutBody::new(stalled, Duration::from_secs(1)), 100, true).await.unwrap_err();
        assert!(matches!(err, ReadError::TimedOut), "{err:?}");
    }

    #[tokio::test]
    async fn over_the_limit_the_rest_is_discarded_first() {
        let mut body = Full::new(Bytes::from(vec![b'x'; 1000]));
        assert!(matches!(read_limited(&mut body, 10, true).await, Err(ReadError::TooLarge)));
        assert!(body.is_end_stream(), "the body was read to its end");
        let ok = read_limited(Full::new(Bytes::from_static(b"abc")), 10, true).await.unwrap();
        assert_eq!(&ok[..], b"abc");
    }

    #[test]
    fn timeouts_are_recognised_through_wrappers() {
        let inner: BoxError = Box::new(BodyReadTimeout(Duration::from_secs(1)));
        #[derive(Debug)]
        struct Wrap(BoxError);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&*self.0)
            }
        }
        assert!(is_read_timeout(&Wrap(inner)));
        assert!(!is_read_timeout(&std::io::Error::other("x")));
    }
}
