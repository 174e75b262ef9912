-- The reference Users table for the embedded demo. NOCASE on Email and InternalUserID matches MySQL's
-- case-insensitive collation, so both databases refuse the same duplicates.
CREATE TABLE IF NOT EXISTS {table} (
  UserID INTEGER PRIMARY KEY AUTOINCREMENT,
  InternalUserID VARCHAR(36) NULL UNIQUE COLLATE NOCASE,
  CognitoID VARCHAR(45) NULL UNIQUE,
  Email VARCHAR(100) NULL UNIQUE COLLATE NOCASE,
  FirstName VARCHAR(50) NULL,
  LastName VARCHAR(50) NULL,
  Active INTEGER NOT NULL DEFAULT 1,
  DateCreated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)
