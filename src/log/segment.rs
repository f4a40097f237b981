//! One log segment: a `.log` file of concatenated record batches and its two
//! sparse indexes.
//!
//! ## Format
//!
//! `<base_offset:020>.log` is a plain concatenation of Kafka RecordBatch v2
//! batches (see [`crate::format::batch`]) exactly as clients sent them, with
//! baseOffset (and, for LogAppendTime topics, the max timestamp) assigned by
//! the broker. Offsets increase: each batch's baseOffset is at least the
//! previous batch's last offset + 1 (exactly that as appended; the log
//! cleaner leaves gaps), and the first batch's is at least the segment's
//! base offset. `.index` and `.timeindex` are described in
//! [`crate::format::index`], `.txnindex` (the aborted transactions whose
//! ABORT markers are in the segment) in [`crate::format::txn_index`].
//!
//! Appends are one positioned `write(2)` per append call into the page
//! cache; nothing is buffered in user space, so a process crash loses nothing
//! that was acknowledged. `fsync` happens only when the caller asks
//! ([`LogSegment::flush`], [`LogSegment::seal`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::batch::{BatchHeader, FormatError, HEADER_SIZE};

use super::offset_index::OffsetIndex;
use super::paths::{segment_file, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT};
use super::time_index::TimeIndex;
use super::transaction_index::TransactionIndex;
use crate::format::producer_snapshot::AbortedTxn;

/// Why a segment's bytes stop being a valid log at `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Byte position in the `.log` file of the first bad batch.
    pub position: u64,
    /// The offset that batch should have started at.
    pub expected_offset: i64,
    /// What is wrong.
    pub reason: String,
}

/// One segment.
#[derive(Debug)]
pub struct LogSegment {
    base_offset: i64,
    log_path: PathBuf,
    /// Bytes of whole batches in the file.
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    txn_index: TransactionIndex,
    /// Whether `txn_index` is known to hold every ABORT marker of the
    /// segment (created here, or loaded from its file); otherwise the
    /// loader rebuilds it from the markers before the log is served.
    txn_index_known: bool,
    index_interval_bytes: u64,
    bytes_since_last_index_entry: u64,
    /// Offset after the last batch (the base offset when empty), or the
    /// end of the offset range the segment covers when that is later (a
    /// cleaned segment whose last records were removed).
    next_offset: i64,
    /// Largest batch max timestamp, and the last offset of that batch.
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch (Kafka rolls `segment.ms` after it).
    rolling_timestamp: i64,
    /// When the broker created or opened the segment, for segments whose
    /// batches carry no timestamp.
    created_ms: i64,
}

/// A read of one segment's bytes planned by [`LogSegment::plan_read`]
/// (under the log's lock) and done by [`SegmentRead::read`] (after it).
pub(crate) struct SegmentRead {
    file: Arc<File>,
    log_path: PathBuf,
    position: u64,
    len: usize,
    /// Trim to whole batches (else `len` is exactly one whole batch).
    whole_batches: bool,
    /// The first batch's header (read under the lock to find `position`).
    first: BatchHeader,
    /// A batch start in `[position, position + len]` from the offset
    /// index, before the last whole batch: where [`SegmentRead::region`]
    /// starts walking batch headers to find the end of the last whole one.
    walk_from: u64,
}

/// Bytes of a segment file to send as they are (`sendfile(2)`): whole
/// batches, planned under the log's lock like a copying read, through the
/// file handle opened then (an unlinked or renamed file still reads as it
/// was; nothing rewrites a segment file in place while the log is open).
#[derive(Debug, Clone)]
pub struct FileRegion {
    file: Arc<File>,
    log_path: PathBuf,
    position: u64,
    len: usize,
    /// The offset after the region's last batch.
    next_offset: i64,
}

impl FileRegion {
    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no byte (never, as a read returns one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The open segment file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the region starts in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The segment file's path, for messages.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The offset after its last batch.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Its bytes, copied (where it cannot be sent from the file: TLS,
    /// read_committed cuts, a response throttled by a quota).
    pub fn read(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.len];
        self.file
            .read_exact_at(&mut buf, self.position)
            .map_err(|e| Error::io("cannot read segment", &self.log_path, e))?;
        Ok(buf)
    }
}

impl SegmentRead {
    /// Whether the first planned batch holds a record or is a control
    /// batch (not one the log cleaner emptied).
    pub(crate) fn first_holds_records(&self) -> bool {
        self.first.record_count > 0 || self.first.is_control()
    }

    /// The planned bytes as a region of the file, to be sent without
    /// copying: the same whole batches [`SegmentRead::read`] returns, found
    /// by reading batch headers only (from the offset index's hint on).
    /// `None` when nothing was planned (no room for the first batch).
    pub(crate) fn region(self) -> Result<Option<FileRegion>> {
        if self.len == 0 {
            return Ok(None);
        }
        let mut end = self.position + self.first.size() as u64;
        let mut next_offset = self.first.next_offset();
        if self.whole_batches {
            let limit = self.position + self.len as u64;
            let mut at = self.walk_from.max(self.position);
            let mut header = [0u8; HEADER_SIZE];
            while at + HEADER_SIZE as u64 <= limit {
                self.file
                    .read_exact_at(&mut header, at)
                    .map_err(|e| Error::io("cannot read segment", &self.log_path, e))?;
                let h = BatchHeader::parse(&header).map_err(|e| {
                    Error::data(format!(
                        "corrupt batch in {} at position {at}: {e}",
                        self.log_path.display()
                    ))
                })?;
                if at + h.size() as u64 > limit {
                    break;
                }
                at += h.size() as u64;
                if at > end {
                    end = at;
                    next_offset = h.next_offset();
                }
            }
        }
        Ok(Some(FileRegion {
            file: self.file,
            log_path: self.log_path,
            position: self.position,
            len: (end - self.position) as usize,
            next_offset,
        }))
    }

    /// The planned bytes, whole batches only.
    pub(crate) fn read(self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.len];
        if self.len == 0 {
            return Ok(buf);
        }
        self.file
            .read_exact_at(&mut buf, self.position)
            .map_err(|e| Error::io("cannot read segment", &self.log_path, e))?;
        if !self.whole_batches {
            return Ok(buf);
        }
        let mut end = 0usize;
        while end + HEADER_SIZE <= buf.len() {
            match BatchHeader::parse(&buf[end..]) {
                Ok(h) if end + h.size() <= buf.len() => end += h.size(),
                Ok(_) => break,
                Err(e) => {
                    return Err(Error::data(format!(
                        "corrupt batch in {} at position {}: {e}",
                        self.log_path.display(),
                        self.position + end as u64
                    )))
                }
            }
        }
        buf.truncate(end);
        Ok(buf)
    }
}

/// A scan of one segment's batches for a timestamp, planned by
/// [`LogSegment::plan_timestamp_scan`] (under the log's lock) and run by
/// [`TimestampScan::scan`] (after it).
pub(crate) struct TimestampScan {
    file: Arc<File>,
    log_path: PathBuf,
    start: u64,
    end: u64,
}

impl TimestampScan {
    /// Hand every planned batch on to `f` (position, header, bytes), in
    /// order, until it returns false.
    pub(crate) fn scan(
        &self,
        mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut batches = FileBatches::new(&self.file, self.start, self.end, 64 * 1024);
        loop {
            match batches.next_batch() {
                Ok(None) => return Ok(()),
                Ok(Some((pos, h, bytes))) => {
                    if !f(pos, &h, bytes)? {
                        return Ok(());
                    }
                }
                Err(e) => return Err(scan_error(&self.log_path, batches.position(), e)),
            }
        }
    }

    /// The segment file's path, for messages.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }
}

/// A batch scan's failure at `position` of `log_path`: corrupt bytes or
/// an I/O error.
fn scan_error(
    log_path: &Path,
    position: u64,
    e: std::result::Result<FormatError, std::io::Error>,
) -> Error {
    match e {
        Ok(f) => Error::data(format!(
            "corrupt batch in {} at position {position}: {f}",
            log_path.display()
        )),
        Err(io) => Error::io("cannot read segment", log_path, io),
    }
}

/// A buffered reader of the batches of a file from a position: reads large
/// chunks with `pread` and hands out whole batches.
pub(super) struct FileBatches<'f> {
    file: &'f File,
    end: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk: usize,
}

impl<'f> FileBatches<'f> {
    pub(super) fn new(file: &'f File, start: u64, end: u64, chunk: usize) -> Self {
        FileBatches {
            file,
            end,
            pos: start,
            buf: Vec::new(),
            buf_start: start,
            chunk,
        }
    }

    /// Position of the next batch.
    pub(super) fn position(&self) -> u64 {
        self.pos
    }

    /// Make `[pos, pos + len)` available in `buf`, reading at least a chunk.
    fn fill(&mut self, len: usize) -> std::io::Result<bool> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if self.pos >= self.buf_start && self.pos + len as u64 <= have_end {
            return Ok(true);
        }
        if self.pos + len as u64 > self.end {
            return Ok(false);
        }
        let want = len.max(self.chunk).min((self.end - self.pos) as usize);
        self.buf.resize(want, 0);
        self.file.read_exact_at(&mut self.buf, self.pos)?;
        self.buf_start = self.pos;
        Ok(true)
    }

    /// The next batch: its position, header and bytes. `Ok(None)` at the end;
    /// `Err(Ok(FormatError))` when the bytes at the position are not a batch
    /// (including one cut short by the end of the file).
    #[allow(clippy::type_complexity)]
    pub(super) fn next_batch(
        &mut self,
    ) -> std::result::Result<
        Option<(u64, BatchHeader, &[u8])>,
        std::result::Result<FormatError, std::io::Error>,
    > {
        if self.pos >= self.end {
            return Ok(None);
        }
        let available = (self.end - self.pos) as usize;
        if available < HEADER_SIZE {
            self.fill(available).map_err(Err)?;
            let at = (self.pos - self.buf_start) as usize;
            return Err(Ok(BatchHeader::parse(&self.buf[at..at + available])
                .err()
                .unwrap_or(FormatError::Truncated {
                    needed: HEADER_SIZE,
                    available,
                })));
        }
        self.fill(HEADER_SIZE).map_err(Err)?;
        let at = (self.pos - self.buf_start) as usize;
        let header = BatchHeader::parse(&self.buf[at..at + HEADER_SIZE]).map_err(Ok)?;
        let size = header.size();
        if size > available {
            return Err(Ok(FormatError::Truncated {
                needed: size,
                available,
            }));
        }
        self.fill(size).map_err(Err)?;
        let at = (self.pos - self.buf_start) as usize;
        let position = self.pos;
        self.pos += size as u64;
        Ok(Some((position, header, &self.buf[at..at + size])))
    }
}

impl Drop for LogSegment {
    fn drop(&mut self) {
        // The cache must not keep a closed or deleted segment's descriptor.
        super::file_handles::forget(&self.log_path);
    }
}

/// Chunk size for scans (recovery, reopen, offset translation).
const SCAN_CHUNK: usize = 1 << 20;

impl LogSegment {
    /// Create a new, empty segment at `base_offset` in `dir`, replacing any
    /// stale files of that name.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<Self> {
        let log_path = segment_file(dir, base_offset, LOG_EXT);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(|e| Error::io("cannot create segment", &log_path, e))?;
        let mut seg = Self::from_file(
            dir,
            base_offset,
            log_path,
            file,
            0,
            index_interval_bytes,
            now_ms,
        );
        // A new segment holds no marker: its (empty) index is complete.
        seg.txn_index_known = true;
        Ok(seg)
    }

    /// Open an existing segment trusting its contents (it was fsynced, or
    /// the log shut down cleanly): load the indexes (rebuilding them if they
    /// are missing or unreadable), then read the batches after the last
    /// index entry to find the end. A bad batch there is reported as
    /// [`Corruption`]; nothing is changed on disk.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<std::result::Result<Self, (Self, Corruption)>> {
        let mut seg = Self::open_files(dir, base_offset, index_interval_bytes, now_ms)?;
        seg.load_txn_index();
        let offset_index =
            OffsetIndex::load(segment_file(dir, base_offset, INDEX_EXT), base_offset);
        let time_index =
            TimeIndex::load(segment_file(dir, base_offset, TIME_INDEX_EXT), base_offset);
        let indexes_usable = match (offset_index, time_index) {
            (Ok(oi), Ok(ti)) => {
                // Every non-empty segment has a time index entry for its
                // first batch (unless it carries no timestamps at all, which
                // only costs a rebuild here).
                let plausible = (seg.size == 0 || !ti.is_empty())
                    && oi.last().is_none_or(|(_, pos)| u64::from(pos) < seg.size)
                    && (seg.size <= index_interval_bytes.max(HEADER_SIZE as u64) * 2
                        || !oi.is_empty());
                seg.offset_index = oi;
                seg.time_index = ti;
                plausible
            }
            _ => false,
        };
        if !indexes_usable {
            tracing::warn!(segment = %seg.log_path.display(), "index files missing or invalid; rebuilding them from the log");
            let corruption = seg.rebuild(false)?;
            return Ok(match corruption {
                None => Ok(seg),
                Some(c) => Err((seg, c)),
            });
        }
        // Scan the tail after the last index entry to find the end.
        let (start_offset, start_pos) = seg.offset_index.last().unwrap_or((base_offset, 0));
        if let Some(last) = seg.time_index.last() {
            seg.max_timestamp = last.timestamp;
            seg.offset_of_max_timestamp = last.offset;
        }
        seg.next_offset = start_offset;
        let file = seg.file()?;
        let mut batches = FileBatches::new(&file, u64::from(start_pos), seg.size, SCAN_CHUNK);
        let mut corruption = None;
        loop {
            match batches.next_batch() {
                Ok(None) => break,
                Ok(Some((pos, h, _))) => {
                    if h.base_offset < seg.next_offset {
                        corruption = Some(Corruption {
                            position: pos,
                            expected_offset: seg.next_offset,
                            reason: format!(
                                "batch has base offset {}, expected at least {}",
                                h.base_offset, seg.next_offset
                            ),
                        });
                        break;
                    }
                    seg.index_batch(pos, &h);
                }
                Err(Ok(e)) => {
                    corruption = Some(Corruption {
                        position: batches.position(),
                        expected_offset: seg.next_offset,
                        reason: e.to_string(),
                    });
                    break;
                }
                Err(Err(e)) => return Err(Error::io("cannot read segment", &seg.log_path, e)),
            }
        }
        seg.rolling_timestamp = seg.first_batch_max_timestamp()?.unwrap_or(now_ms);
        if corruption.is_some() {
            // The indexes may be what is wrong (an entry off a batch
            // boundary): rebuild from the log before blaming the log.
            tracing::warn!(segment = %seg.log_path.display(), "segment tail does not scan from its index; rebuilding the indexes");
            let corruption = seg.rebuild(false)?;
            return Ok(match corruption {
                None => Ok(seg),
                Some(c) => Err((seg, c)),
            });
        }
        match corruption {
            None => Ok(Ok(seg)),
            Some(c) => Ok(Err((seg, c))),
        }
    }

    /// Open an existing segment whose tail may be torn (not known to be
    /// fsynced): read and CRC-check every batch, rebuild both indexes, and
    /// return where the valid log ends if it ends before the file does. The
    /// caller decides whether to truncate there.
    pub fn open_for_recovery(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<(Self, Option<Corruption>)> {
        let mut seg = Self::open_files(dir, base_offset, index_interval_bytes, now_ms)?;
        let corruption = seg.rebuild(true)?;
        Ok((seg, corruption))
    }

    fn open_files(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<Self> {
        let log_path = segment_file(dir, base_offset, LOG_EXT);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| Error::io("cannot open segment", &log_path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("cannot stat segment", &log_path, e))?
            .len();
        Ok(Self::from_file(
            dir,
            base_offset,
            log_path,
            file,
            size,
            index_interval_bytes,
            now_ms,
        ))
    }

    /// A segment over an open `.log` file of `size` bytes, with empty
    /// indexes (loaded or rebuilt by the caller).
    fn from_file(
        dir: &Path,
        base_offset: i64,
        log_path: PathBuf,
        file: File,
        size: u64,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Self {
        // Every access takes its handle from the bounded cache
        // (`file_handles`): this one has done its job (created the file or
        // read its size).
        drop(file);
        LogSegment {
            base_offset,
            size,
            offset_index: OffsetIndex::empty(
                segment_file(dir, base_offset, INDEX_EXT),
                base_offset,
            ),
            time_index: TimeIndex::empty(
                segment_file(dir, base_offset, TIME_INDEX_EXT),
                base_offset,
            ),
            txn_index: TransactionIndex::empty(segment_file(dir, base_offset, TXN_INDEX_EXT)),
            txn_index_known: false,
            log_path,
            index_interval_bytes,
            bytes_since_last_index_entry: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            rolling_timestamp: now_ms,
            created_ms: now_ms,
        }
    }

    /// Load the `.txnindex` file of a segment opened as trusted. Missing or
    /// unreadable (Kafka: a corrupt index makes the loader recover the
    /// segment), it stays unknown and the loader rebuilds it.
    fn load_txn_index(&mut self) {
        match TransactionIndex::load(self.txn_index.path().to_path_buf()) {
            Ok(Some(idx)) => {
                self.txn_index = idx;
                self.txn_index_known = true;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(segment = %self.log_path.display(), error = %e, "transaction index unusable; rebuilding it from the markers");
            }
        }
    }

    /// Rebuild the indexes and end offset from the whole file. With
    /// `check_crc`, every batch's CRC is verified too. Returns the first
    /// problem; the in-memory state then covers only the valid prefix (the
    /// file is not changed).
    fn rebuild(&mut self, check_crc: bool) -> Result<Option<Corruption>> {
        self.offset_index.clear();
        self.time_index.clear();
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.bytes_since_last_index_entry = 0;
        self.next_offset = self.base_offset;
        let mut valid_end = 0u64;
        let mut corruption = None;
        let file = self.file()?;
        let mut batches = FileBatches::new(&file, 0, self.size, SCAN_CHUNK);
        loop {
            match batches.next_batch() {
                Ok(None) => break,
                Ok(Some((pos, header, bytes))) => {
                    let expected = self.next_offset;
                    // Offsets increase; a cleaned segment has gaps.
                    let problem = if header.base_offset < expected {
                        Some(format!(
                            "batch has base offset {}, expected at least {expected}",
                            header.base_offset
                        ))
                    } else if check_crc {
                        BatchHeader::validate(bytes).err().map(|e| e.to_string())
                    } else {
                        None
                    };
                    if let Some(reason) = problem {
                        corruption = Some(Corruption {
                            position: pos,
                            expected_offset: expected,
                            reason,
                        });
                        break;
                    }
                    self.index_batch(pos, &header);
                    valid_end = pos + header.size() as u64;
                }
                Err(Ok(e)) => {
                    corruption = Some(Corruption {
                        position: batches.position(),
                        expected_offset: self.next_offset,
                        reason: e.to_string(),
                    });
                    break;
                }
                Err(Err(e)) => return Err(Error::io("cannot read segment", &self.log_path, e)),
            }
        }
        if corruption.is_some() {
            self.size = valid_end;
        }
        Ok(corruption)
    }

    /// Account for the batch `header` at `position`, just written or just
    /// read back: offset index entry every `index.interval.bytes`, time
    /// index entry beside it when the max timestamp grew, end offset.
    fn index_batch(&mut self, position: u64, header: &BatchHeader) {
        let indexed =
            position == 0 || self.bytes_since_last_index_entry >= self.index_interval_bytes;
        if indexed {
            // Positions fit in u32: segments roll before 2 GiB (LocalLog::append).
            self.offset_index
                .append(header.base_offset, position as u32);
            self.bytes_since_last_index_entry = 0;
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        if indexed {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
        if position == 0 {
            self.rolling_timestamp = header.max_timestamp;
        }
        self.bytes_since_last_index_entry += header.size() as u64;
        self.next_offset = header.next_offset();
    }

    /// The `.log` file (read-write), from the bounded cache of open
    /// segment handles (`file_handles`), opened again if it was closed.
    fn file(&self) -> Result<Arc<File>> {
        super::file_handles::open(&self.log_path).map_err(|e| {
            if super::file_handles::out_of_descriptors(&e) {
                // Not a failing disk: the partition stays online and the
                // client retries (KAFKA_STORAGE_ERROR is retriable).
                Error::new(
                    crate::error::ErrorKind::Unavailable,
                    format!("cannot open segment {}: {e}", self.log_path.display()),
                )
            } else {
                Error::io("cannot open segment", &self.log_path, e)
            }
        })
    }

    fn first_batch_max_timestamp(&self) -> Result<Option<i64>> {
        if self.size < HEADER_SIZE as u64 {
            return Ok(None);
        }
        let mut buf = [0u8; HEADER_SIZE];
        self.file()?
            .read_exact_at(&mut buf, 0)
            .map_err(|e| Error::io("cannot read segment", &self.log_path, e))?;
        Ok(BatchHeader::parse(&buf).ok().map(|h| h.max_timestamp))
    }

    /// Cut the file at `position` (bytes after it are dropped), e.g. the
    /// position of a [`Corruption`]. Indexes must already exclude it.
    pub fn truncate_file_at(&mut self, position: u64) -> Result<()> {
        self.file()?
            .set_len(position)
            .map_err(|e| Error::io("cannot truncate segment", &self.log_path, e))?;
        self.size = position;
        Ok(())
    }

    /// Append `bytes`, one or more whole batches whose headers are `headers`
    /// (offsets already assigned, the first at [`LogSegment::next_offset`]),
    /// with a single positioned write.
    pub fn append(&mut self, bytes: &[u8], headers: &[(usize, BatchHeader)]) -> Result<()> {
        let file = self.file()?;
        if let Err(e) = file.write_all_at(bytes, self.size) {
            // A partial write leaves bytes past `size`; trim them so they can
            // never sit between this segment's end and the next one's start.
            if let Err(trim) = file.set_len(self.size) {
                tracing::error!(segment = %self.log_path.display(), error = %trim, "cannot trim a failed append");
            }
            return Err(Error::io("cannot append to segment", &self.log_path, e));
        }
        for (rel_pos, header) in headers {
            self.index_batch(self.size + *rel_pos as u64, header);
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// fsync the log file (data only; its size is part of the data).
    pub fn flush(&self) -> Result<()> {
        self.file()?
            .sync_data()
            .map_err(|e| Error::io("cannot fsync segment", &self.log_path, e))
    }

    /// Write the indexes to their files; fsync them when `sync`. A
    /// transaction index not known yet is left alone (its missing file is
    /// what tells the next open to rebuild it).
    pub fn flush_indexes(&mut self, sync: bool) -> Result<()> {
        self.offset_index
            .flush(sync)
            .map_err(|e| Error::io("cannot write index", self.offset_index.path(), e))?;
        self.time_index
            .flush(sync)
            .map_err(|e| Error::io("cannot write time index", self.time_index.path(), e))?;
        if self.txn_index_known {
            self.txn_index.flush(sync)?;
        }
        Ok(())
    }

    /// Index an ABORT marker just appended to this segment (written
    /// through to the `.txnindex` file).
    pub fn append_aborted_txn(&mut self, entry: AbortedTxn) -> Result<()> {
        self.txn_index.append(entry)
    }

    /// The aborted transactions whose markers this segment holds.
    pub fn aborted_txns(&self) -> &[AbortedTxn] {
        self.txn_index.entries()
    }

    /// Whether the transaction index is known complete (else the loader
    /// rebuilds it: [`LogSegment::set_txn_index`]).
    pub fn txn_index_known(&self) -> bool {
        self.txn_index_known
    }

    /// Set the transaction index rebuilt from the segment's markers and
    /// write it.
    pub fn set_txn_index(&mut self, entries: Vec<AbortedTxn>) -> Result<()> {
        self.txn_index.replace(entries);
        self.txn_index_known = true;
        self.txn_index.flush(false)
    }

    /// Make the segment complete: a final time index entry with the max
    /// timestamp, and both indexes written to their files. Nothing is
    /// fsynced here (see [`LogSegment::file_paths`] and
    /// `LocalLog::pending_flush`).
    pub fn seal(&mut self) -> Result<()> {
        if self.max_timestamp >= 0 || self.size > 0 {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
        self.flush_indexes(false)
    }

    /// The segment's files: `.log`, `.index`, `.timeindex`, `.txnindex`.
    pub fn file_paths(&self) -> [PathBuf; 4] {
        [
            self.log_path.clone(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
            self.txn_index.path().to_path_buf(),
        ]
    }

    /// The position of the first batch whose last offset is ≥ `offset`,
    /// with its header; `None` when the segment has no such batch.
    pub fn translate_offset(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let (_, start) = self.offset_index.lookup(offset);
        let file = self.file()?;
        let mut batches = FileBatches::new(&file, u64::from(start), self.size, 64 * 1024);
        loop {
            match batches.next_batch() {
                Ok(None) => return Ok(None),
                Ok(Some((pos, h, _))) => {
                    if h.last_offset() >= offset {
                        return Ok(Some((pos, h)));
                    }
                }
                Err(e) => return Err(self.scan_error(batches.position(), e)),
            }
        }
    }

    /// Hand the header of every batch from the one holding `offset` on to
    /// `f`, in order. A batch that cannot be read ends the scan: the error
    /// names the file and the position.
    pub fn for_each_batch_from(&self, offset: i64, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        let (_, start) = self.offset_index.lookup(offset);
        let file = self.file()?;
        let mut batches = FileBatches::new(&file, u64::from(start), self.size, SCAN_CHUNK);
        loop {
            match batches.next_batch() {
                Ok(None) => return Ok(()),
                Ok(Some((_, h, _))) => {
                    if h.last_offset() >= offset {
                        f(&h);
                    }
                }
                Err(e) => return Err(self.scan_error(batches.position(), e)),
            }
        }
    }

    /// Bytes of whole batches starting at the batch holding `offset`, at most
    /// `max_bytes` of them, or the first batch whole when it alone is larger
    /// and `min_one` is set. `None` when `offset` is past this segment.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<Option<Vec<u8>>> {
        self.plan_read(offset, max_bytes, min_one)?
            .map(SegmentRead::read)
            .transpose()
    }

    /// [`LogSegment::read`] in two halves: where the batches are (an index
    /// lookup and a short scan of headers), found now, under the log's
    /// lock; the bytes, read by [`SegmentRead::read`] after it. The read
    /// holds the file open and stops at the segment's size now, so appends
    /// after it, a deletion or a cleaner's swap of the file do not change
    /// what it returns.
    pub(crate) fn plan_read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Option<SegmentRead>> {
        let Some((pos, first)) = self.translate_offset(offset)? else {
            return Ok(None);
        };
        let available = (self.size - pos) as usize;
        let (len, whole_batches) = if first.size() > max_bytes {
            // Only the first batch, whole, and only if allowed (KIP-74).
            (if min_one { first.size() } else { 0 }, false)
        } else {
            (max_bytes.min(available), true)
        };
        // The earlier of the last two index entries within the read: the
        // batch there ends within it, so a header walk from it finds the
        // last whole batch (a region's end) in a few reads.
        let walk_from = match self.offset_index.floor_positions(pos + len as u64) {
            (Some(earlier), _) => u64::from(earlier).max(pos),
            _ => pos,
        };
        Ok(Some(SegmentRead {
            file: self.file()?,
            log_path: self.log_path.clone(),
            position: pos,
            len,
            whole_batches,
            first,
            walk_from,
        }))
    }

    /// `len` bytes at `position`.
    pub fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file()?
            .read_exact_at(&mut buf, position)
            .map_err(|e| Error::io("cannot read segment", &self.log_path, e))?;
        Ok(buf)
    }

    /// Hand every batch from the first whose max timestamp may be ≥
    /// `timestamp` (the time index's hint) on to `f` (position, header,
    /// bytes), in order, until it returns false.
    pub fn scan_from_timestamp(
        &self,
        timestamp: i64,
        f: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.plan_timestamp_scan(timestamp)?.scan(f)
    }

    /// The part of [`LogSegment::scan_from_timestamp`] that needs the log's
    /// lock: where to start (the indexes), where to stop (the size now) and
    /// the open file. The scan itself ([`TimestampScan::scan`]) runs after
    /// it, over the segment as it was planned (a deletion or a cleaner's
    /// swap of the file meanwhile does not change what it reads).
    pub(crate) fn plan_timestamp_scan(&self, timestamp: i64) -> Result<TimestampScan> {
        let start_offset = self
            .time_index
            .lookup_below(timestamp)
            .map(|entry| entry.offset)
            .unwrap_or(self.base_offset);
        let (_, start) = self.offset_index.lookup(start_offset);
        Ok(TimestampScan {
            file: self.file()?,
            log_path: self.log_path.clone(),
            start: u64::from(start),
            end: self.size,
        })
    }

    fn scan_error(
        &self,
        position: u64,
        e: std::result::Result<FormatError, std::io::Error>,
    ) -> Error {
        scan_error(&self.log_path, position, e)
    }

    /// Drop every batch whose last offset is ≥ `offset` (so a batch holding
    /// `offset` goes whole) and rebuild the indexes. Returns bytes removed.
    pub fn truncate_to(&mut self, offset: i64) -> Result<u64> {
        let Some((pos, _)) = self.translate_offset(offset)? else {
            return Ok(0);
        };
        let removed = self.size - pos;
        self.truncate_file_at(pos)?;
        self.txn_index.truncate_to(offset);
        if let Some(c) = self.rebuild(false)? {
            return Err(Error::data(format!(
                "corrupt batch in {} at position {} while truncating: {}",
                self.log_path.display(),
                c.position,
                c.reason
            )));
        }
        self.flush_indexes(false)?;
        Ok(removed)
    }

    /// Take the segment out of the log for good, cheaply: its `.log` is
    /// renamed to `.log.deleted` (a crash from here on leaves the segment
    /// gone: the next open removes `.deleted` files and index files
    /// without a `.log`); the files to unlink later, off the partition's
    /// lock ([`delete_marked`]), are returned.
    pub fn mark_deleted(self) -> Result<Vec<PathBuf>> {
        super::file_handles::forget(&self.log_path);
        let marked = deleted_name(&self.log_path);
        match std::fs::rename(&self.log_path, &marked) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot mark deleted", &self.log_path, e)),
        }
        Ok(vec![
            marked,
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
            self.txn_index.path().to_path_buf(),
        ])
    }

    /// Delete the segment's files: the log first, so a crash midway leaves
    /// only stray index files, which the next open removes.
    pub fn delete_files(self) -> Result<()> {
        // No descriptor of it may outlive the file (its space would stay
        // allocated): the cache's goes first.
        super::file_handles::forget(&self.log_path);
        let remove = |p: &Path| match std::fs::remove_file(p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("cannot delete", p, e)),
        };
        remove(&self.log_path)?;
        remove(self.offset_index.path())?;
        remove(self.time_index.path())?;
        remove(self.txn_index.path())
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    /// Let the segment's offset range run to `end` (the next segment's
    /// base) when its last batch ends before: a cleaned segment.
    pub(super) fn extend_end(&mut self, end: i64) {
        self.next_offset = self.next_offset.max(end);
    }
    /// Offset after the last batch.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    /// Bytes in the `.log` file.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// No batches.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// Largest batch max timestamp (-1 when empty).
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    /// Last offset of the first batch holding the max timestamp.
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }
    /// Max timestamp of the first batch, which `segment.ms` is measured
    /// from; `None` when the segment is empty.
    pub fn first_batch_timestamp(&self) -> Option<i64> {
        (!self.is_empty()).then_some(self.rolling_timestamp)
    }
    /// When the broker created (or opened) this segment, by its clock.
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }
    /// Path of the `.log` file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    /// Number of offset index entries.
    pub fn index_entries(&self) -> usize {
        self.offset_index.len()
    }
}

/// The name a segment's `.log` takes once deleted, until it is unlinked.
pub(super) fn deleted_name(log_path: &Path) -> PathBuf {
    let mut name = log_path.as_os_str().to_os_string();
    name.push(DELETED_SUFFIX);
    PathBuf::from(name)
}

/// Suffix of a deleted segment's `.log` waiting to be unlinked.
pub const DELETED_SUFFIX: &str = ".deleted";

/// Unlink files of segments [`LogSegment::mark_deleted`] took out (a
/// file already gone is fine; a failure is logged: the next open removes
/// what is left).
pub fn delete_marked(files: Vec<PathBuf>) {
    for path in files {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a deleted segment's file; the next open removes it")
            }
        }
    }
}
