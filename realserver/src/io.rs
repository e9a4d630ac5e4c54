//! A stream wrapper that counts bytes in and out for `/stats`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Receives byte counts from a [`Counted`] stream.
pub trait ByteCounter {
    /// `n` bytes were read from the peer.
    fn read(&self, n: u64);
    /// `n` bytes were written to the peer.
    fn written(&self, n: u64);
}

/// Wraps a stream and reports every successful read and write to a counter.
#[derive(Debug)]
pub struct Counted<S, C> {
    inner: S,
    counter: C,
}

impl<S, C> Counted<S, C> {
    /// Wraps `inner`, reporting to `counter`.
    pub fn new(inner: S, counter: C) -> Self {
        Counted { inner, counter }
    }
}

impl<S: AsyncRead + Unpin, C: ByteCounter + Unpin> AsyncRead for Counted<S, C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            this.counter.read((buf.filled().len() - before) as u64);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin, C: ByteCounter + Unpin> AsyncWrite for Counted<S, C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.counter.written(n as u64);
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            this.counter.written(n as u64);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// Keeps hyper's shutdown(2) before close(2): when the client's input is
    /// left unread (an oversized head, say) close sends RST, and only the FIN
    /// queued earlier by shutdown lets the client read the error reply to a
    /// clean end of stream. (Skipping it saved ~0.4 us per connection; the
    /// oversized-head test fails without it.)
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
