//! Uploading one sealed segment: `.index`, `.timeindex`, `.txnindex`, `.log`
//! (multipart above a threshold), then the manifest last, as the commit
//! point. Bytes are read from the sealed files, never re-encoded; each
//! object's CRC32C goes into the manifest.

use std::io::Read;
use std::path::PathBuf;

use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};

use super::keys::{segment_key, SegmentObject};
use super::RemoteStore;
use crate::error::{Error, ErrorKind, Result};
use crate::failpoints::fail_point;
use crate::format::manifest::{
    BlockChecksumBuilder, BlockChecksums, ObjectInfo, SegmentManifest, SegmentObjects,
    MANIFEST_VERSION,
};

/// A sealed local segment to upload.
#[derive(Debug, Clone)]
pub struct SealedSegment {
    pub base_offset: i64,
    /// Inclusive.
    pub last_offset: i64,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub log: PathBuf,
    pub index: PathBuf,
    pub timeindex: PathBuf,
    /// The aborted-transaction index (uploaded empty when the file is
    /// missing: the segment holds no ABORT marker this build indexed).
    pub txnindex: PathBuf,
}

impl SealedSegment {
    /// The catalog row recording an upload of this segment as `uuid` by
    /// `owner`, `COPY_STARTED` at `now_ms` (sizes and checksums are
    /// [`SealedSegment::record_upload`]'s once its manifest is written).
    pub fn copy_started_row(
        &self,
        owner: &SegmentOwner,
        uuid: uuid::Uuid,
        now_ms: i64,
    ) -> crate::catalog::RemoteSegment {
        crate::catalog::RemoteSegment {
            segment_uuid: uuid,
            topic: owner.topic.clone(),
            topic_id: owner.topic_id,
            partition: owner.partition,
            base_offset: self.base_offset,
            last_offset: self.last_offset,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            log_size: 0,
            index_size: 0,
            timeindex_size: 0,
            log_crc32c: 0,
            state: crate::catalog::RemoteState::CopyStarted,
            updated_ms: now_ms,
            index_crc32c: None,
            timeindex_crc32c: None,
            log_blocks: None,
            txnindex: None,
        }
    }

    /// Copy the sizes and checksums `manifest` recorded into `row`.
    pub fn record_upload(row: &mut crate::catalog::RemoteSegment, manifest: SegmentManifest) {
        row.log_size = manifest.objects.log.size;
        row.index_size = manifest.objects.index.size;
        row.timeindex_size = manifest.objects.timeindex.size;
        row.log_crc32c = manifest.objects.log.crc32c;
        row.index_crc32c = Some(manifest.objects.index.crc32c);
        row.timeindex_crc32c = Some(manifest.objects.timeindex.crc32c);
        row.log_blocks = manifest.log_blocks.map(std::sync::Arc::new);
        row.txnindex = manifest.objects.txnindex;
    }
}

/// Most parts a `.log` object is split into.
pub const MAX_PARTS: usize = 16;

/// The part size for an object of `size` bytes: `configured`, or larger
/// (whole MiBs) so the object needs at most [`MAX_PARTS`] parts — fewer
/// requests per GiB on large segments, at the cost of larger part buffers.
pub fn part_size_for(size: u64, configured: usize) -> usize {
    configured.max((size as usize).div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20)
}

/// How segments are uploaded.
#[derive(Debug, Clone, Copy)]
pub struct UploadSettings {
    /// Multipart part size (and the size above which `.log` goes multipart).
    pub part_size: usize,
    /// Parts in flight per upload.
    pub max_concurrency: usize,
    /// Block size of the `.log` object's block checksums (manifest
    /// `log_blocks`), which ranged reads are checked against.
    pub crc_block_bytes: u32,
}

/// Default `crc_block_bytes`: 4 bytes of checksum per MiB, 4 KiB per GiB.
pub const DEFAULT_CRC_BLOCK_BYTES: u32 = 1 << 20;

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            part_size: 16 << 20,
            max_concurrency: 4,
            crc_block_bytes: DEFAULT_CRC_BLOCK_BYTES,
        }
    }
}

/// Who a segment belongs to.
#[derive(Debug, Clone)]
pub struct SegmentOwner {
    pub topic: String,
    pub topic_id: uuid::Uuid,
    pub partition: u32,
}

fn remote_error(what: &str, key: &object_store::path::Path, e: object_store::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("cannot {what} {key}: {e}")).with_source(e)
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        // A segment without index files (never the case after a seal) uploads empty ones.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

/// A `.txnindex` file's bytes, checked (a corrupt one is never tiered:
/// the error names the file).
fn read_txn_index(path: &PathBuf) -> Result<Vec<u8>> {
    let bytes = read_file(path)?;
    crate::format::txn_index::decode_txn_index(&bytes)
        .map_err(|e| Error::data(format!("corrupt transaction index {}: {e}", path.display())))?;
    Ok(bytes)
}

/// Upload one object from memory; returns its size and CRC32C.
async fn put_small(
    store: &RemoteStore,
    key: &object_store::path::Path,
    bytes: Vec<u8>,
) -> Result<ObjectInfo> {
    let info = ObjectInfo {
        size: bytes.len() as u64,
        crc32c: crc32c::crc32c(&bytes),
    };
    store
        .store
        .put(key, PutPayload::from(bytes))
        .await
        .map_err(|e| remote_error("upload", key, e))?;
    Ok(info)
}

/// Upload the `.log` file, streaming it in parts when it is large; returns
/// its size, CRC32C and block checksums.
async fn put_log(
    store: &RemoteStore,
    key: &object_store::path::Path,
    path: &PathBuf,
    settings: UploadSettings,
) -> Result<(ObjectInfo, BlockChecksums)> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io("cannot stat", path, e))?
        .len();
    let mut blocks = BlockChecksumBuilder::new(settings.crc_block_bytes);
    if size as usize <= settings.part_size {
        let bytes = read_file(path)?;
        blocks.update(&bytes);
        return Ok((put_small(store, key, bytes).await?, blocks.finish()));
    }
    let part_size = part_size_for(size, settings.part_size);
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let upload = store
        .store
        .put_multipart(key)
        .await
        .map_err(|e| remote_error("start a multipart upload of", key, e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
    let mut crc = 0u32;
    let mut buf = vec![0u8; part_size];
    let mut sent = 0u64;
    let result: Result<()> = async {
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = file
                    .read(&mut buf[filled..])
                    .map_err(|e| Error::io("cannot read", path, e))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buf[..filled]);
            blocks.update(&buf[..filled]);
            writer
                .wait_for_capacity(settings.max_concurrency)
                .await
                .map_err(|e| remote_error("upload a part of", key, e))?;
            writer.write(&buf[..filled]);
            sent += filled as u64;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            // Every part handed over, the upload not completed: a crash
            // here leaves an open multipart upload (the reaper's).
            fail_point!("rlm.copy.before_multipart_complete");
            writer
                .finish()
                .await
                .map_err(|e| remote_error("complete the multipart upload of", key, e))?;
        }
        Err(e) => {
            // Abort so no parts linger; the reaper lists stale uploads too.
            let _ = writer.abort().await;
            return Err(e);
        }
    }
    if sent != size {
        return Err(Error::data(format!(
            "{} changed size during upload ({size} -> {sent} bytes)",
            path.display()
        )));
    }
    Ok((ObjectInfo { size, crc32c: crc }, blocks.finish()))
}

/// Upload a sealed segment under `segment_uuid` and commit it with its
/// manifest. Nothing is committed unless every object made it.
pub async fn upload_segment(
    store: &RemoteStore,
    owner: &SegmentOwner,
    segment_uuid: uuid::Uuid,
    segment: &SealedSegment,
    settings: UploadSettings,
    now_ms: i64,
) -> Result<SegmentManifest> {
    let snapshot = segment
        .log
        .parent()
        .and_then(|dir| crate::log::producer_state::read_snapshot(dir, segment.last_offset + 1));
    upload_segment_with(
        store,
        owner,
        segment_uuid,
        segment,
        settings,
        now_ms,
        None,
        snapshot,
    )
    .await
}

/// [`upload_segment`] with the manifest's optional parts given: for a
/// segment the log cleaner wrote, what it replaces (`compaction`) and the
/// producer state at its end (the last replaced segment's).
#[allow(clippy::too_many_arguments)]
pub async fn upload_segment_with(
    store: &RemoteStore,
    owner: &SegmentOwner,
    segment_uuid: uuid::Uuid,
    segment: &SealedSegment,
    settings: UploadSettings,
    now_ms: i64,
    compaction: Option<crate::format::manifest::Compaction>,
    producer_snapshot: Option<crate::format::producer_snapshot::ProducerSnapshot>,
) -> Result<SegmentManifest> {
    let key = |o| {
        segment_key(
            &owner.topic,
            &owner.topic_id,
            owner.partition,
            segment.base_offset,
            &segment_uuid,
            o,
        )
    };
    let index = put_small(
        store,
        &key(SegmentObject::Index),
        read_file(&segment.index)?,
    )
    .await?;
    fail_point!("rlm.copy.after_object.index");
    let timeindex = put_small(
        store,
        &key(SegmentObject::TimeIndex),
        read_file(&segment.timeindex)?,
    )
    .await?;
    fail_point!("rlm.copy.after_object.timeindex");
    let txnindex = put_small(
        store,
        &key(SegmentObject::TxnIndex),
        read_txn_index(&segment.txnindex)?,
    )
    .await?;
    let (log, log_blocks) =
        put_log(store, &key(SegmentObject::Log), &segment.log, settings).await?;
    fail_point!("rlm.copy.after_object.log");
    let manifest = SegmentManifest {
        format_version: MANIFEST_VERSION,
        topic: owner.topic.clone(),
        topic_id: owner.topic_id,
        partition: owner.partition,
        segment_uuid,
        base_offset: segment.base_offset,
        last_offset: segment.last_offset,
        first_timestamp: segment.first_timestamp,
        max_timestamp: segment.max_timestamp,
        objects: SegmentObjects {
            log,
            index,
            timeindex,
            txnindex: Some(txnindex),
        },
        created_ms: now_ms,
        log_blocks: Some(log_blocks),
        producer_snapshot,
        compaction,
    };
    put_small(store, &key(SegmentObject::Manifest), manifest.to_json()).await?;
    fail_point!("rlm.copy.after_manifest");
    Ok(manifest)
}

/// Delete every object of a segment (missing ones are fine: deletes are
/// idempotent).
pub async fn delete_segment(
    store: &RemoteStore,
    owner: &SegmentOwner,
    base_offset: i64,
    segment_uuid: uuid::Uuid,
) -> Result<()> {
    // The manifest first: without it the segment is no longer committed.
    for o in [
        SegmentObject::Manifest,
        SegmentObject::Log,
        SegmentObject::Index,
        SegmentObject::TimeIndex,
        SegmentObject::TxnIndex,
    ] {
        let key = segment_key(
            &owner.topic,
            &owner.topic_id,
            owner.partition,
            base_offset,
            &segment_uuid,
            o,
        );
        match store.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(remote_error("delete", &key, e)),
        }
    }
    Ok(())
}
