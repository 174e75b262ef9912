-- One row per table row to update. Temporary: private to this session, and CREATE TEMPORARY
-- does not commit. Built from the table itself so the staged values carry the table's own
-- types, character sets and collations: comparing them never mixes collations.
CREATE TEMPORARY TABLE sync_staged_changes (PRIMARY KEY (UserID))
SELECT
  UserID,
  InternalUserID AS ExpectedInternalUserID,
  0 AS SetCognitoID,
  0 AS ClearCognitoID,
  CognitoID AS OldCognitoID,
  CognitoID AS NewCognitoID,
  0 AS SetEmail,
  0 AS ClearEmail,
  Email AS OldEmail,
  Email AS NewEmail
FROM {table}
LIMIT 0
