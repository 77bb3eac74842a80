ALTER TABLE tasks ADD COLUMN expected_journal BLOB;
