-- Rows to insert, proven absent by the plan; a plain INSERT from here fails on any duplicate key.
CREATE TEMP TABLE sync_staged_inserts (
  InternalUserID TEXT NOT NULL PRIMARY KEY,
  CognitoID TEXT NULL,
  Email TEXT NULL,
  FirstName TEXT NULL,
  LastName TEXT NULL
)
