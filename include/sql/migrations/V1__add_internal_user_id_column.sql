-- Flyway versioned migration: the stable id of every person, identical in every environment.
-- ${users_table} is a Flyway placeholder (flyway.placeholders.users_table=Users).
ALTER TABLE ${users_table} ADD COLUMN InternalUserID VARCHAR(36) NULL AFTER UserID;
