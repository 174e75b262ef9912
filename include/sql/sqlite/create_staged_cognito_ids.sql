-- The rows whose CognitoID changes. NewValue compares as the table's column does (BINARY).
CREATE TEMP TABLE {staged} (
  UserID INTEGER NOT NULL PRIMARY KEY,
  ExpectedInternalUserID TEXT NULL,
  OldValue TEXT NULL,
  NewValue TEXT NULL
)
