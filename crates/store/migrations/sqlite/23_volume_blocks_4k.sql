-- Volume blocks of 64 KiB are cut into blocks of 4 KiB (a commit stores only the 4 KiB it
-- dirtied, not the 64 KiB around it). Every row becomes 16 rows of the same version and
-- `superseded_by`, block `16 × block + n` holding bytes `4096 × n ..` of the old one; an all-zero
-- part is stored empty, as the store writes a zeroed block, so that every part keeps the versions
-- that wrote it (what a commit's conflict check reads). The table has a new name so that a
-- build that stores 64 KiB blocks fails on it instead of mixing its blocks in.
CREATE TABLE volume_blocks_4k (
    program_id    TEXT NOT NULL,
    block         INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    data          BLOB NOT NULL,
    superseded_by INTEGER,
    PRIMARY KEY (program_id, block, version)
);
WITH RECURSIVE part(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM part WHERE n < 15)
INSERT INTO volume_blocks_4k (program_id, block, version, data, superseded_by)
SELECT program_id, block * 16 + n, version,
       CASE WHEN length(data) <= n * 4096 OR substr(data, n * 4096 + 1, 4096) = zeroblob(4096) THEN x''
            ELSE substr(data, n * 4096 + 1, 4096) END,
       superseded_by
FROM volume_blocks, part;
DROP TABLE volume_blocks;
CREATE INDEX volume_blocks_4k_superseded ON volume_blocks_4k (program_id, superseded_by)
    WHERE superseded_by IS NOT NULL;
CREATE INDEX volume_blocks_4k_valid ON volume_blocks_4k (program_id, block, version, superseded_by);
