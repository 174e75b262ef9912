-- Bulk staging from an owner-only tab-separated file (\N is NULL). LOCAL implies IGNORE: the
-- caller checks the row count and that no warning (a truncation) was raised.
LOAD DATA LOCAL INFILE %s INTO TABLE {staged} CHARACTER SET utf8mb4
FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n'
(UserID, ExpectedInternalUserID, OldValue, NewValue)
