-- The size and CRC32C of each tiered segment's .txnindex object (also in
-- its manifest). A reader of tiered segments skips the GET of an empty one
-- (most segments: no aborted transaction ended in them), as Kafka's
-- KIP-1058 flag does, and checks the others. NULL for segments tiered
-- before this migration: their object is read (or its absence handled) as
-- before.
ALTER TABLE remote_segments ADD COLUMN txnindex_size INTEGER;
ALTER TABLE remote_segments ADD COLUMN txnindex_crc32c INTEGER;
