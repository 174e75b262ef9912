-- Bulk staging of the rows to insert; see load_staged_keys.sql.
LOAD DATA LOCAL INFILE %s INTO TABLE sync_staged_inserts CHARACTER SET utf8mb4
FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n'
(InternalUserID, CognitoID, Email, FirstName, LastName)
