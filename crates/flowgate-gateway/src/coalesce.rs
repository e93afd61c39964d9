//! Response writes coalesced per scheduler round.
//!
//! Each answer sent to a waiting client costs the kernel a wake-up of that
//! client, and on a virtual machine a wake-up of an idle CPU is an
//! inter-processor interrupt: measured on the benchmark machine, 13 % of the
//! server's core went to it at 11,000 answers a second. A [`CoalescedIo`] does not
//! write an answer when the HTTP dispatcher flushes it; it queues the connection
//! for the worker thread's flusher, a task that runs after the connections
//! already due in the same round and writes every queued answer back to back.
//! A client with several answers waiting is woken once for all of them.
//!
//! Nothing is acknowledged early: the dispatcher's flush stays pending until
//! the bytes are in the socket, so it does not read the next request, close
//! the connection or report success before that. When the socket cannot take
//! all the bytes (a slow reader), the connection writes the rest itself, waiting
//! on the socket as a plain stream does. At most [`MAX_BUFFERED`] bytes are held
//! per connection; larger answers are written through.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes one connection holds before it writes through.
pub const MAX_BUFFERED: usize = 64 * 1024;
/// Capacity a connection keeps between answers.
const KEPT_CAPACITY: usize = 8 * 1024;

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Waiting in the flusher's queue.
    queued: bool,
    /// The flusher could not write everything: the connection writes the
    /// rest itself, waiting on the socket.
    direct: bool,
    /// A write error the flusher met, reported by the next flush.
    error: Option<io::Error>,
    /// The dispatcher waiting on its flush.
    waker: Option<Waker>,
}

impl Conn {
    /// Writes the buffer straight to the socket, waiting on it when full.
    fn poll_write_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut written = 0;
        let result = loop {
            if written == self.buf.len() {
                break Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.stream).poll_write(cx, &self.buf[written..]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        self.buf.drain(..written);
        if self.buf.is_empty() {
            self.direct = false;
            self.buf.shrink_to(KEPT_CAPACITY);
        }
        result
    }

    /// The flusher's write: what the socket takes now, without waiting.
    fn write_now(&mut self) {
        let mut written = 0;
        while written < self.buf.len() {
            match self.stream.try_write(&self.buf[written..]) {
                Ok(0) => {
                    self.error = Some(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.direct = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        self.buf.drain(..written);
        if self.buf.is_empty() {
            self.buf.shrink_to(KEPT_CAPACITY);
        }
    }
}

/// The flusher of this worker thread.
struct Flusher {
    queue: RefCell<Vec<Rc<RefCell<Conn>>>>,
    waker: RefCell<Option<Waker>>,
    started: Cell<bool>,
}

thread_local! {
    static FLUSHER: Rc<Flusher> = Rc::new(Flusher {
        queue: RefCell::new(Vec::new()),
        waker: RefCell::new(None),
        started: Cell::new(false),
    });
}

impl Flusher {
    /// Queues `conn` and wakes the flusher, starting it on first use (on the
    /// worker's local task set: connections and flusher share one thread).
    fn enqueue(conn: Rc<RefCell<Conn>>) {
        FLUSHER.with(|f| {
            f.queue.borrow_mut().push(conn);
            if !f.started.replace(true) {
                let running = Running(f.clone());
                actix_web::rt::spawn(async move {
                    poll_fn(|cx| running.0.poll_round(cx)).await;
                });
            } else if let Some(w) = f.waker.borrow_mut().take() {
                w.wake();
            }
        });
    }

    /// Writes every queued connection's bytes, wakes their dispatchers, and
    /// waits for the next round. Never ends.
    fn poll_round(&self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let batch = std::mem::take(&mut *self.queue.borrow_mut());
            if batch.is_empty() {
                break;
            }
            for conn in batch {
                let waker = {
                    let mut c = conn.borrow_mut();
                    c.queued = false;
                    c.write_now();
                    c.waker.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            }
        }
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The flusher task's hold on its state: when the task is dropped with its
/// runtime, the next connection of the thread starts a new one.
struct Running(Rc<Flusher>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.started.set(false);
        self.0.waker.borrow_mut().take();
    }
}

/// A TCP connection whose writes are coalesced with the other connections of
/// its worker thread (see the module docs).
pub struct CoalescedIo {
    conn: Rc<RefCell<Conn>>,
}

impl CoalescedIo {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            conn: Rc::new(RefCell::new(Conn {
                stream,
                buf: Vec::new(),
                queued: false,
                direct: false,
                error: None,
                waker: None,
            })),
        }
    }
}

impl AsyncRead for CoalescedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn.borrow_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CoalescedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut c = self.conn.borrow_mut();
        if let Some(e) = c.error.take() {
            return Poll::Ready(Err(e));
        }
        if c.buf.len() >= MAX_BUFFERED {
            // Full: write through (the flusher may hold it queued; what it
            // finds then is what is left).
            match c.poll_write_buf(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = data.len().min(MAX_BUFFERED - c.buf.len());
        c.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut c = self.conn.borrow_mut();
        if let Some(e) = c.error.take() {
            return Poll::Ready(Err(e));
        }
        if c.buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if c.direct {
            return c.poll_write_buf(cx);
        }
        c.waker = Some(cx.waker().clone());
        if !c.queued {
            c.queued = true;
            drop(c);
            Flusher::enqueue(self.conn.clone());
        }
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut c = self.conn.borrow_mut();
        if let Some(e) = c.error.take() {
            return Poll::Ready(Err(e));
        }
        if !c.buf.is_empty() {
            match c.poll_write_buf(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        Pin::new(&mut c.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// `n` accepted server-side connections, each wrapped, and their clients.
    async fn pairs(n: usize) -> Vec<(CoalescedIo, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut out = Vec::new();
        for _ in 0..n {
            let client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            out.push((CoalescedIo::new(server), client));
        }
        out
    }

    fn local<F: std::future::Future<Output = ()>>(f: F) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f);
    }

    #[test]
    fn answers_of_one_round_all_arrive_and_flushes_wait_for_the_socket() {
        local(async {
            let conns = pairs(8).await;
            let mut tasks = Vec::new();
            for (i, (mut io, mut client)) in conns.into_iter().enumerate() {
                tasks.push(tokio::task::spawn_local(async move {
                    let answer = format!("answer {i}").repeat(10);
                    io.write_all(answer.as_bytes()).await.unwrap();
                    // Nothing reached the socket before the flush.
                    let mut probe = [0u8; 1];
                    assert!(client.try_read(&mut probe).is_err());
                    io.flush().await.unwrap();
                    // Once the flush is done the bytes are in the socket.
                    let mut got = vec![0u8; answer.len()];
                    client.read_exact(&mut got).await.unwrap();
                    assert_eq!(got, answer.as_bytes());
                    io.shutdown().await.unwrap();
                    let mut rest = Vec::new();
                    client.read_to_end(&mut rest).await.unwrap();
                    assert!(rest.is_empty());
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
    }

    #[test]
    fn a_large_answer_to_a_slow_reader_arrives_whole_and_in_order() {
        local(async {
            let (mut io, mut client) = pairs(1).await.pop().unwrap();
            let body: Vec<u8> = (0..4 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
            let sent = body.clone();
            let writer = tokio::task::spawn_local(async move {
                // Several writes and flushes, more than the socket buffers hold.
                for chunk in sent.chunks(300 * 1024) {
                    io.write_all(chunk).await.unwrap();
                    io.flush().await.unwrap();
                }
                io.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                tokio::time::sleep(Duration::from_micros(200)).await;
                let n = client.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            writer.await.unwrap();
            assert_eq!(got.len(), body.len());
            assert!(got == body, "the bytes arrived out of order");
        });
    }

    #[test]
    fn a_client_that_went_away_fails_the_flush_instead_of_hanging() {
        local(async {
            let (mut io, client) = pairs(1).await.pop().unwrap();
            drop(client);
            let failed = tokio::time::timeout(Duration::from_secs(10), async {
                for _ in 0..1000 {
                    if io.write_all(&[b'x'; 64 * 1024]).await.is_err() || io.flush().await.is_err()
                    {
                        return true;
                    }
                }
                false
            })
            .await;
            assert_eq!(failed, Ok(true));
        });
    }
}
