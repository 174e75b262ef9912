-- Rows to insert, proven absent by the plan; a plain INSERT from here fails on any duplicate key.
-- Collations as the table's columns, so that the collision checks compare as its unique keys do.
CREATE TEMP TABLE sync_staged_inserts (
  InternalUserID TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
  CognitoID TEXT NULL,
  Email TEXT NULL COLLATE NOCASE,
  FirstName TEXT NULL,
  LastName TEXT NULL
)
