-- A unique index whose only column is InternalUserID.
SELECT COUNT(*) FROM information_schema.STATISTICS s
WHERE s.TABLE_SCHEMA = DATABASE() AND s.TABLE_NAME = %s AND s.COLUMN_NAME = 'InternalUserID' AND s.NON_UNIQUE = 0
  AND NOT EXISTS (
    SELECT 1 FROM information_schema.STATISTICS o
    WHERE o.TABLE_SCHEMA = s.TABLE_SCHEMA AND o.TABLE_NAME = s.TABLE_NAME AND o.INDEX_NAME = s.INDEX_NAME
      AND o.COLUMN_NAME <> 'InternalUserID')
