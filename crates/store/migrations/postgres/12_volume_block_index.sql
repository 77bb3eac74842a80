-- Which row of a block is valid at a version, decided from the index alone (the same index as
-- SQLite's, where it spares reading every kept version's 64 KiB of data).
CREATE INDEX volume_blocks_valid ON volume_blocks (program_id, block, version, superseded_by);
