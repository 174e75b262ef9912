-- The seed's Users table before the backfill's migrations: no InternalUserID yet.
-- Used by the backfill's demo and tests.
CREATE TABLE IF NOT EXISTS {table} (
  UserID INT NOT NULL AUTO_INCREMENT,
  CognitoID VARCHAR(45) NULL,
  Email VARCHAR(100) NULL,
  FirstName VARCHAR(50) NULL,
  LastName VARCHAR(50) NULL,
  Active TINYINT NOT NULL DEFAULT 1,
  DateCreated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (UserID),
  UNIQUE KEY CognitoID_UNIQUE (CognitoID),
  UNIQUE KEY Email_UNIQUE (Email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_general_ci
