-- Checksums a ranged reader of tiered segments verifies against (they are
-- also in each segment's manifest): the whole .index and .timeindex
-- objects, and every block of the .log object (little-endian u32 CRC32Cs
-- of log_block_bytes-sized blocks). NULL for segments tiered before this
-- migration; their batches are checked by their own CRCs only.
ALTER TABLE remote_segments ADD COLUMN index_crc32c INTEGER;
ALTER TABLE remote_segments ADD COLUMN timeindex_crc32c INTEGER;
ALTER TABLE remote_segments ADD COLUMN log_block_bytes INTEGER;
ALTER TABLE remote_segments ADD COLUMN log_block_crc32c BLOB;
