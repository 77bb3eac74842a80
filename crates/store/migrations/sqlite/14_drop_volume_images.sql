-- The images were split into `volume_blocks` by the previous migration.
ALTER TABLE volumes DROP COLUMN image;
