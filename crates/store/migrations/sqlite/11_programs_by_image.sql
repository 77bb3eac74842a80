-- Receipt verification looks circuits up by image id (PostgreSQL has had this index from its
-- first migration).
CREATE INDEX programs_by_image ON programs(image_id);
