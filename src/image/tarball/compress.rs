//! Multi-core compressors for the tar byte stream, each an `io::Write` that
//! takes the uncompressed stream and writes the compressed one to `W`.
//!
//! gzip: the stream is cut into fixed-size chunks (cut points depend only on
//! byte offsets, never on timing or thread count); each chunk becomes one
//! gzip member, compressed on a worker thread, and members are written in
//! order. Concatenated members are one valid gzip file (RFC 1952 §2.2), which
//! gzip, GNU tar and zlib's `gzread` all read. A fixed pool of chunk buffers,
//! handed back by the writer only once a chunk is on disk, bounds memory.
//!
//! xz: liblzma's own multi-threaded encoder, which writes one standard `.xz`
//! stream of independently compressed blocks; its output does not depend on
//! the thread count because blocks are cut at fixed sizes.
//!
//! What goes into the stream (tar framing) is left to the parent module.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compression as GzLevel, GzBuilder};
use liblzma::stream::{Check, Filters, LzmaOptions, MtStreamBuilder};
use liblzma::write::XzEncoder;

/// Uncompressed bytes per gzip member. Deflate's window is 32 KiB, so
/// restarting it every 2 MiB costs well under 0.1 % in size.
const GZ_CHUNK: usize = 2 << 20;

/// gzip level. Measured on a 4 GiB root with 670 MB of data (2 cores,
/// miniz_oxide): level 1 takes 1.9 s for 257 MB, 3 takes 4.5 s for 220 MB,
/// 6 (gzip's default) takes 12.3 s for 214 MB. Level 3 is the knee: 2.7x
/// faster than 6 for 3 % more bytes, where level 1 would add 20 %.
const GZ_LEVEL: u32 = 3;

/// xz preset. On the same input: preset 2 takes 28 s (user 55 s) for
/// 154 MB; 3 takes 46 s for 150 MB; 6 takes 253 s of CPU for 137 MB; 9
/// (libguestfs's `xz --best`) is slower still for a further 1 %. Only
/// presets up to 2 stay within a fifth of libguestfs's single-core
/// `xz --best` time on two cores with headroom, hence 2, at about 12 % more
/// bytes than preset 6.
const XZ_PRESET: u32 = 2;

/// Uncompressed bytes per xz block. Twice preset 2's 2 MiB dictionary, so a
/// block restart loses little; liblzma holds about two blocks per thread
/// (input and output), so this also bounds memory (58 MB peak RSS on two
/// threads).
const XZ_BLOCK: u32 = 4 << 20;

/// Build the xz encoder writing to `out`.
///
/// # Errors
/// liblzma refusing the options (out of memory).
pub(super) fn xz_writer<W: Write>(out: W, threads: usize) -> io::Result<XzEncoder<W>> {
    let lzma = LzmaOptions::new_preset(XZ_PRESET).map_err(io::Error::other)?;
    let mut filters = Filters::new();
    filters.lzma2(&lzma);
    let stream = MtStreamBuilder::new()
        .threads(u32::try_from(threads).unwrap_or(u32::MAX).max(1))
        .block_size(u64::from(XZ_BLOCK))
        .filters(filters)
        // CRC64 is what the xz tool writes by default.
        .check(Check::Crc64)
        .encoder()
        .map_err(io::Error::other)?;
    Ok(XzEncoder::new_stream(out, stream))
}

/// A job for a gzip worker: sequence number and uncompressed chunk.
type Job = (u64, Vec<u8>);

/// A finished chunk: sequence number, its input buffer (for reuse) and the
/// compressed member.
type Done = (u64, Vec<u8>, io::Result<Vec<u8>>);

/// Parallel gzip writer; call [`ParallelGzip::finish`] to flush and get `W`
/// back. Dropping it unfinished stops the threads and discards the output.
pub(super) struct ParallelGzip<W: Write + Send + 'static> {
    /// The chunk being filled.
    buf: Vec<u8>,
    /// Next sequence number.
    seq: u64,
    /// To the workers; `None` once finishing.
    jobs: Option<SyncSender<Job>>,
    /// Empty buffers coming back from the writer thread.
    free: Receiver<Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> ParallelGzip<W> {
    /// Start `threads` workers (at least one; fewer where the process is at
    /// its thread limit) and a writer thread on `out`.
    ///
    /// # Errors
    /// No worker, or no writer, could be started.
    pub(super) fn new(out: W, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        // One chunk filling, one per worker, and slack so the writer can
        // wait on a slow chunk while others finish: memory stays at about
        // `buffers` × (chunk + compressed chunk).
        let buffers = 2 * threads + 2;
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(buffers);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 1..buffers {
            // The first buffer is `buf` below; the rest wait in the pool.
            let _ = free_tx.send(Vec::with_capacity(GZ_CHUNK));
        }
        let mut workers = Vec::with_capacity(threads);
        let mut refused = None;
        for _ in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            match std::thread::Builder::new().spawn(move || gzip_worker(&rx, &tx)) {
                Ok(worker) => workers.push(worker),
                Err(e) => refused = Some(e),
            }
        }
        drop(done_tx);
        let no_thread = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("starting a gzip thread: {e} (is the process at its thread limit?)"),
            )
        };
        if let (true, Some(e)) = (workers.is_empty(), refused) {
            return Err(no_thread(e));
        }
        let writer = std::thread::Builder::new()
            .spawn(move || ordered_writer(out, &done_rx, &free_tx))
            .map_err(no_thread)?;
        Ok(ParallelGzip {
            buf: Vec::with_capacity(GZ_CHUNK),
            seq: 0,
            jobs: Some(job_tx),
            free: free_rx,
            workers,
            writer: Some(writer),
        })
    }

    /// Hand the current chunk to the workers and take a fresh buffer.
    fn dispatch(&mut self) -> io::Result<()> {
        let next = match self.free.recv() {
            Ok(b) => b,
            // The writer has stopped: its error is what matters.
            Err(_) => return Err(self.writer_error()),
        };
        let full = std::mem::replace(&mut self.buf, next);
        let sent = self.jobs.as_ref().map(|jobs| jobs.send((self.seq, full)));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.writer_error());
        }
        self.seq += 1;
        Ok(())
    }

    /// Collect the writer thread's error after the pipeline broke.
    fn writer_error(&mut self) -> io::Error {
        self.jobs = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("compression thread stopped unexpectedly"),
        }
    }

    /// Compress what is left, wait for every thread, and return `W`.
    ///
    /// # Errors
    /// The first error writing `W`.
    pub(super) fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            self.dispatch()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(io::Error::other("compression thread stopped unexpectedly")),
        }
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = GZ_CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == GZ_CHUNK {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are cut at fixed sizes for reproducibility; flushing early
        // would change the output, so this is a no-op.
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        // Closing the job channel lets workers and then the writer run dry.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Compress jobs until the channel closes or the writer goes away.
fn gzip_worker(jobs: &Mutex<Receiver<Job>>, done: &mpsc::Sender<Done>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, input)) = job else { return };
        let member = gzip_member(&input);
        if done.send((seq, input, member)).is_err() {
            return;
        }
    }
}

/// One gzip member with a fixed header (mtime 0, OS "unknown") so the output
/// is reproducible.
fn gzip_member(input: &[u8]) -> io::Result<Vec<u8>> {
    let out = Vec::with_capacity(input.len() / 3 + 64);
    let mut enc = GzBuilder::new().mtime(0).operating_system(255).write(out, GzLevel::new(GZ_LEVEL));
    enc.write_all(input)?;
    enc.finish()
}

/// Write finished members in sequence order and return their buffers to the
/// pool.
fn ordered_writer<W: Write>(
    mut out: W,
    done: &Receiver<Done>,
    free: &mpsc::Sender<Vec<u8>>,
) -> io::Result<W> {
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    for (seq, input, member) in done {
        waiting.insert(seq, (input, member));
        while let Some((mut input, member)) = waiting.remove(&next) {
            out.write_all(&member?)?;
            input.clear();
            // The producer may already be gone (finishing); that is fine.
            let _ = free.send(input);
            next += 1;
        }
    }
    out.flush()?;
    Ok(out)
}
