-- One row per table row to update. Temporary: private to this session, no implicit commit.
CREATE TEMP TABLE sync_staged_changes (
  UserID INTEGER NOT NULL PRIMARY KEY,
  ExpectedInternalUserID TEXT NULL,
  SetCognitoID INTEGER NOT NULL,
  ClearCognitoID INTEGER NOT NULL,
  OldCognitoID TEXT NULL,
  NewCognitoID TEXT NULL,
  SetEmail INTEGER NOT NULL,
  ClearEmail INTEGER NOT NULL,
  OldEmail TEXT NULL,
  NewEmail TEXT NULL
)
