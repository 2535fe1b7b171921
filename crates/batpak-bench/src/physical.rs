//! The physical limits: P1, the fdatasync rate of this disk, and P2, the CPU
//! ceiling of framing records (CRC32 + blake3) into a buffered file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use crate::error::{io_err, BenchResult};
use crate::fixture::Fixture;
use crate::measure::{disk_bytes, Latencies};
use crate::report::Sample;

const BLOCK_BYTES: usize = 4096;

/// P1: `n` appends of 4 KiB to one new file, each followed by `fdatasync`.
/// Every sync allocates new blocks, as a growing log does.
pub fn fdatasync_appends(dir: &Path, n: usize) -> BenchResult<Sample> {
    let path = dir.join("p1-append.bin");
    let file = create(&path)?;
    timed_block_syncs(&file, &path, n, &[0x5Au8; BLOCK_BYTES])
}

/// Writes `block` at blocks `0..n` of `file`, each followed by `fdatasync`,
/// timing each write + sync.
fn timed_block_syncs(
    file: &File,
    path: &Path,
    n: usize,
    block: &[u8; BLOCK_BYTES],
) -> BenchResult<Sample> {
    let mut latencies = Latencies::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let op = Instant::now();
        file.write_all_at(block, (i * BLOCK_BYTES) as u64)
            .map_err(io_err("write", path))?;
        file.sync_data().map_err(io_err("fdatasync", path))?;
        latencies.record_since(op);
    }
    let seconds = started.elapsed().as_secs_f64();
    finish(seconds, latencies, path)
}

/// P1 variant: rewrites blocks of a file that is already allocated and synced,
/// each followed by `fdatasync` (no block allocation, no size change).
pub fn fdatasync_overwrites(dir: &Path, n: usize) -> BenchResult<Sample> {
    let path = dir.join("p1-overwrite.bin");
    let file = create(&path)?;
    let block = [0xA5u8; BLOCK_BYTES];
    for i in 0..n {
        file.write_all_at(&block, (i * BLOCK_BYTES) as u64)
            .map_err(io_err("write", &path))?;
    }
    file.sync_all().map_err(io_err("fsync", &path))?;
    timed_block_syncs(&file, &path, n, &block)
}

/// P2: frames `n` pre-serialized ~150-byte payloads as
/// `[len u32][crc32 u32][blake3 chain link 32 B][payload]` into a 256 KiB
/// buffered file, chaining each link to the previous one; flushes at the end
/// without syncing.
pub fn framing_loop(dir: &Path, fixture: &Fixture, n: usize) -> BenchResult<Sample> {
    let path = dir.join("p2-frames.bin");
    let file = create(&path)?;
    let payloads: Vec<Vec<u8>> = (0..1024)
        .map(|i| serde_json::to_vec(&fixture.payload(i)))
        .collect::<Result<_, _>>()?;
    let mut writer = BufWriter::with_capacity(256 * 1024, file);
    let mut link = [0u8; 32];
    let started = Instant::now();
    for i in 0..n {
        let payload = &payloads[i % payloads.len()];
        let mut hasher = blake3::Hasher::new();
        hasher.update(&link);
        hasher.update(payload);
        link = *hasher.finalize().as_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&link);
        crc.update(payload);
        let crc = crc.finalize();
        writer
            .write_all(&(payload.len() as u32).to_le_bytes())
            .and_then(|()| writer.write_all(&crc.to_le_bytes()))
            .and_then(|()| writer.write_all(&link))
            .and_then(|()| writer.write_all(payload))
            .map_err(io_err("write", &path))?;
    }
    writer.flush().map_err(io_err("flush", &path))?;
    let seconds = started.elapsed().as_secs_f64();
    drop(writer);
    finish(seconds, Latencies::default(), &path)
}

fn create(path: &Path) -> BenchResult<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_err("create", path))
}

fn finish(seconds: f64, mut latencies: Latencies, path: &Path) -> BenchResult<Sample> {
    let (p50_us, p99_us) = latencies.p50_p99_us().unzip();
    let bytes = disk_bytes(path);
    std::fs::remove_file(path).map_err(io_err("remove", path))?;
    Ok(Sample {
        seconds,
        p50_us,
        p99_us,
        bytes_on_disk: Some(bytes),
        ..Sample::default()
    })
}
