-- The rows whose Email changes. NewValue compares as the table's column does (NOCASE).
CREATE TEMP TABLE {staged} (
  UserID INTEGER NOT NULL PRIMARY KEY,
  ExpectedInternalUserID TEXT NULL,
  OldValue TEXT NULL,
  NewValue TEXT NULL COLLATE NOCASE
)
