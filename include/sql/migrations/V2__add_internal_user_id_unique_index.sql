-- Flyway versioned migration: one row per InternalUserID (NULLs allowed until the backfill).
ALTER TABLE ${users_table} ADD UNIQUE KEY InternalUserID_UNIQUE (InternalUserID);
