-- The columns of the table's unique indexes (index, column): the optimistic write needs one of a
-- single column on each key it writes, so that the server refuses every duplicate by itself.
SELECT INDEX_NAME, COLUMN_NAME
FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND NON_UNIQUE = 0
