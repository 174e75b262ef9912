-- SQLite form of V1 (the demo's database): no AFTER; NOCASE as MySQL's collation compares.
ALTER TABLE ${users_table} ADD COLUMN InternalUserID VARCHAR(36) NULL COLLATE NOCASE;
