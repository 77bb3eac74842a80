-- zkcoproc: then split volume images into blocks
-- Volumes are stored as 64 KiB blocks, one row per block and version that wrote it; a row is
-- valid from `version` until the version that replaced it (`superseded_by`, NULL: still current).
-- All-zero blocks are not stored (or stored empty once a version zeroes them).
CREATE TABLE volume_blocks (
    program_id    TEXT NOT NULL,
    block         BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    data          BYTEA NOT NULL,
    superseded_by BIGINT,
    PRIMARY KEY (program_id, block, version)
);
CREATE INDEX volume_blocks_superseded ON volume_blocks (program_id, superseded_by)
    WHERE superseded_by IS NOT NULL;
ALTER TABLE volumes ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
ALTER TABLE programs ADD COLUMN volume_size BIGINT;
-- FAT and directory blocks are mostly zeros: lz4 where the server has it (as 02 did for images).
DO $$
BEGIN
    ALTER TABLE volume_blocks ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 TOAST compression unavailable; volume blocks stay on pglz';
END $$;
