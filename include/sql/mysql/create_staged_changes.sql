-- One row per table row to update. Temporary: private to this session, no implicit commit.
CREATE TEMPORARY TABLE sync_staged_changes (
  UserID BIGINT NOT NULL PRIMARY KEY,
  ExpectedInternalUserID VARCHAR(36) NULL,
  SetCognitoID TINYINT NOT NULL,
  ClearCognitoID TINYINT NOT NULL,
  OldCognitoID VARCHAR(255) NULL,
  NewCognitoID VARCHAR(255) NULL,
  SetEmail TINYINT NOT NULL,
  ClearEmail TINYINT NOT NULL,
  OldEmail VARCHAR(255) NULL,
  NewEmail VARCHAR(255) NULL
) DEFAULT CHARSET = utf8mb4
