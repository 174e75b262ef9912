-- Rows to insert, proven absent by the plan; a plain INSERT from here fails on any duplicate key.
CREATE TEMPORARY TABLE sync_staged_inserts (
  InternalUserID VARCHAR(36) NOT NULL PRIMARY KEY,
  CognitoID VARCHAR(255) NULL,
  Email VARCHAR(255) NULL,
  FirstName VARCHAR(255) NULL,
  LastName VARCHAR(255) NULL
) DEFAULT CHARSET = utf8mb4
