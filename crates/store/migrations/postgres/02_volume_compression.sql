-- Volume images are mostly empty FAT clusters: lz4 compresses them several times faster than the
-- default pglz. Servers built without lz4 (or older than 14) keep pglz.
DO $$
BEGIN
    ALTER TABLE volumes ALTER COLUMN image SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 TOAST compression unavailable; volumes stay on pglz';
END $$;
