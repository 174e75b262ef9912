-- The reference Users table (the seed's, with InternalUserID as migrated by the backfill).
-- Used by the demo, the docker-compose stack and the tests; production already has its own.
CREATE TABLE IF NOT EXISTS {table} (
  UserID INT NOT NULL AUTO_INCREMENT,
  InternalUserID VARCHAR(36) NULL,
  CognitoID VARCHAR(45) NULL,
  Email VARCHAR(100) NULL,
  FirstName VARCHAR(50) NULL,
  LastName VARCHAR(50) NULL,
  Active TINYINT NOT NULL DEFAULT 1,
  DateCreated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (UserID),
  UNIQUE KEY InternalUserID_UNIQUE (InternalUserID),
  UNIQUE KEY CognitoID_UNIQUE (CognitoID),
  UNIQUE KEY Email_UNIQUE (Email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_general_ci
