//! A producer thread writes; the pipeline reads. Bounded: at most
//! `DEPTH` chunks of `CHUNK` bytes wait between them.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::{SourceEnd, SourceReader};

/// 1 MiB chunks, 4 queued: 4 MiB between a producer and the pipeline.
const CHUNK: usize = 1 << 20;
const DEPTH: usize = 4;

/// The producer's side.
pub struct ChannelWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf
            .extend_from_slice(data.get(..n).unwrap_or_default());
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.send(chunk).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the acquisition stopped reading")
        })
    }
}

/// The pipeline's side.
pub struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    producer: Option<JoinHandle<io::Result<SourceEnd>>>,
    end: Option<SourceEnd>,
}

/// Runs `produce` on its own thread, writing into the returned reader.
/// `produce` returns what it could not read; an `Err` fails the acquisition.
pub fn spawn<F>(produce: F) -> ChannelReader
where
    F: FnOnce(&mut ChannelWriter) -> io::Result<SourceEnd> + Send + 'static,
{
    let (tx, rx) = sync_channel(DEPTH);
    let producer = std::thread::spawn(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let end = produce(&mut w)?;
        w.flush()?;
        Ok(end)
    });
    ChannelReader {
        rx,
        cur: Vec::new(),
        pos: 0,
        producer: Some(producer),
        end: None,
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(rest) = self.cur.get(self.pos..).filter(|r| !r.is_empty()) {
                let n = rest.len().min(buf.len());
                buf.get_mut(..n)
                    .unwrap_or_default()
                    .copy_from_slice(rest.get(..n).unwrap_or_default());
                self.pos += n;
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(chunk) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Err(_) => {
                    // The producer is done: its result decides between EOF and an error.
                    if let Some(p) = self.producer.take() {
                        let end = p
                            .join()
                            .map_err(|_| io::Error::other("the producer thread panicked"))??;
                        self.end = Some(end);
                    }
                    return Ok(0);
                }
            }
        }
    }
}

impl SourceReader for ChannelReader {
    fn finish(&mut self) -> io::Result<SourceEnd> {
        Ok(self.end.take().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_bytes_and_the_end() {
        let mut r = spawn(|w| {
            for i in 0..3000u32 {
                w.write_all(&i.to_le_bytes().repeat(100))?;
            }
            Ok(SourceEnd {
                changed: None,
                notes: vec!["x unreadable".into()],
                ..SourceEnd::default()
            })
        });
        let mut all = Vec::new();
        r.read_to_end(&mut all).expect("read");
        assert_eq!(all.len(), 3000 * 400);
        assert_eq!(&all[400..404], &1u32.to_le_bytes());
        assert_eq!(
            r.finish().expect("end").notes,
            vec!["x unreadable".to_string()]
        );
    }

    #[test]
    fn a_producer_error_is_a_read_error() {
        let mut r = spawn(|w| {
            w.write_all(b"some")?;
            w.flush()?;
            Err(io::Error::other("walker failed"))
        });
        let mut all = Vec::new();
        let err = r.read_to_end(&mut all).expect_err("must fail");
        assert!(err.to_string().contains("walker failed"));
    }
}
