//! The log writer of the long-running commands (`serve`, `gateway`): lines are appended to one
//! in-memory buffer and written to stderr in blocks — when 64 KiB have gathered, every 100 ms
//! by a small background thread, at once for a `WARN` or `ERROR` line, and when the process
//! stops. The access log writes a line per request: one write(2) per line cost a busy server a
//! quarter of its throughput (bench/, with the access log on), a write per block costs nothing
//! measurable. nginx buffers its access log the same way (`access_log … buffer= flush=`).
//!
//! Why not a channel to a writer thread (tracing-appender's `NonBlocking`)? Measured here: every
//! line is an allocation and a wake-up of that thread, and on a machine whose cores are busy with
//! requests that costs about as much as the write it saves.
//!
//! A line is only ever appended whole (the formatter hands each line over in one `write`), and the
//! buffer is written under its lock, so lines keep their order. If the process is killed outright
//! (SIGKILL), at most the last 100 ms of info lines are lost; warnings and errors never wait.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

const BLOCK: usize = 64 * 1024;
const INTERVAL: Duration = Duration::from_millis(100);

/// Where full blocks are written.
type Sink = Box<dyn Fn(&[u8]) + Send + Sync>;

struct Shared {
    buf: Mutex<Vec<u8>>,
    /// Where blocks go: stderr (a test's buffer in the tests).
    sink: Sink,
    /// Set when the process stops; wakes the flusher.
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    /// Write what the buffer holds (under its lock, so lines keep their order).
    fn flush_locked(&self, buf: &mut Vec<u8>) {
        if !buf.is_empty() {
            (self.sink)(buf);
            buf.clear();
        }
    }

    fn flush(&self) {
        if let Ok(mut b) = self.buf.lock() {
            self.flush_locked(&mut b);
        }
    }
}

/// The `MakeWriter` to give `tracing_subscriber::fmt().with_writer(..)`.
#[derive(Clone)]
pub struct BufferedStderr(Arc<Shared>);

/// Keep it for the life of the process: dropping it stops the flusher and writes what is left.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.stop.lock() {
            *s = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.flush();
    }
}

/// A buffered stderr and its guard (the flusher thread runs until the guard is dropped).
pub fn buffered_stderr() -> (BufferedStderr, FlushGuard) {
    buffered(Box::new(|b: &[u8]| {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(b);
        let _ = err.flush();
    }))
}

fn buffered(sink: Sink) -> (BufferedStderr, FlushGuard) {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Vec::with_capacity(BLOCK)),
        sink,
        stop: Mutex::new(false),
        wake: Condvar::new(),
    });
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("tether-log".into())
        .spawn(move || {
            let Ok(mut stopped) = s.stop.lock() else { return };
            while !*stopped {
                stopped = match s.wake.wait_timeout(stopped, INTERVAL) {
                    Ok((g, _)) => g,
                    Err(_) => return,
                };
                s.flush();
            }
        })
        .ok();
    (BufferedStderr(shared.clone()), FlushGuard { shared, thread })
}

impl BufferedStderr {
    /// Append whole lines that need not be written at once (the access log's, formatted by it).
    pub fn append(&self, lines: &[u8]) {
        let _ = Line { shared: &self.0, urgent: false }.write(lines);
    }
}

/// One line's writer: appends, and writes the buffer out when it is full or the line is urgent.
pub struct Line<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut b = self.shared.buf.lock().map_err(|_| std::io::Error::other("log buffer poisoned"))?;
        b.extend_from_slice(data);
        if self.urgent || b.len() >= BLOCK {
            self.shared.flush_locked(&mut b);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = Line<'a>;
    fn make_writer(&'a self) -> Line<'a> {
        Line { shared: &self.0, urgent: true }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line<'a> {
        Line { shared: &self.0, urgent: *meta.level() <= tracing::Level::WARN }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines_wait_for_a_block_a_warning_or_the_guard_and_keep_their_order() {
        let out = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let o = out.clone();
        let (w, guard) = buffered(Box::new(move |b: &[u8]| o.lock().unwrap().push(b.to_vec())));
        let writes = || out.lock().unwrap().clone();
        let mut info = Line { shared: &w.0, urgent: false };
        info.write_all(b"one\n").unwrap();
        info.write_all(b"two\n").unwrap();
        assert!(writes().is_empty(), "kept until later");
        Line { shared: &w.0, urgent: true }.write_all(b"warn\n").unwrap();
        assert_eq!(writes(), [b"one\ntwo\nwarn\n".to_vec()], "one write, in order, with the warning");
        info.write_all(&vec![b'x'; BLOCK]).unwrap();
        assert_eq!(writes().len(), 2, "a full block is written");
        info.write_all(b"last\n").unwrap();
        drop(guard);
        assert_eq!(writes().last().unwrap(), b"last\n", "the guard writes what is left");
    }

    #[test]
    fn the_flusher_writes_within_its_interval() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let o = out.clone();
        let (w, _guard) = buffered(Box::new(move |b: &[u8]| o.lock().unwrap().extend_from_slice(b)));
        Line { shared: &w.0, urgent: false }.write_all(b"soon\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(out.lock().unwrap().as_slice(), b"soon\n");
    }
}
