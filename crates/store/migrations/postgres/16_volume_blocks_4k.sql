-- Volume blocks of 64 KiB are cut into blocks of 4 KiB (a commit stores only the 4 KiB it
-- dirtied, not the 64 KiB around it). Every row becomes 16 rows of the same version and
-- `superseded_by`, block `16 × block + n` holding bytes `4096 × n ..` of the old one; an all-zero
-- part is stored empty, as the store writes a zeroed block, so that every part keeps the versions
-- that wrote it (what a commit's conflict check reads). The table has a new name so that a
-- replica of an older build, still running, fails on it instead of mixing 64 KiB blocks in.
CREATE TABLE volume_blocks_4k (
    program_id    TEXT NOT NULL,
    block         BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    data          BYTEA NOT NULL,
    superseded_by BIGINT,
    PRIMARY KEY (program_id, block, version)
);
DO $$
BEGIN
    ALTER TABLE volume_blocks_4k ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 TOAST compression unavailable; volume blocks stay on pglz';
END $$;
INSERT INTO volume_blocks_4k (program_id, block, version, data, superseded_by)
SELECT program_id, block * 16 + n, version,
       CASE WHEN length(data) <= n * 4096
              OR substring(data FROM n * 4096 + 1 FOR 4096) = decode(repeat('00', 4096), 'hex') THEN ''::bytea
            ELSE substring(data FROM n * 4096 + 1 FOR 4096) END,
       superseded_by
FROM volume_blocks CROSS JOIN generate_series(0, 15) AS part(n);
DROP TABLE volume_blocks;
CREATE INDEX volume_blocks_4k_superseded ON volume_blocks_4k (program_id, superseded_by)
    WHERE superseded_by IS NOT NULL;
CREATE INDEX volume_blocks_4k_valid ON volume_blocks_4k (program_id, block, version, superseded_by);
