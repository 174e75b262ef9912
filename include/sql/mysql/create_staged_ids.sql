-- New ids for rows that have none; built from the table for its types and collations.
CREATE TEMPORARY TABLE sync_staged_ids (PRIMARY KEY (UserID))
SELECT UserID, InternalUserID FROM {table} LIMIT 0
