-- Which row of a block is valid at a version, decided from an index: the table's rows keep
-- `superseded_by` after the 64 KiB `data`, so SQLite walked the whole overflow chain of every
-- kept version of a block (16 of them) to test it, on each read and each commit.
CREATE INDEX volume_blocks_valid ON volume_blocks (program_id, block, version, superseded_by);
