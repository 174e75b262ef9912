-- After the optimistic UPDATEs: how many staged inserts would take a key value a row holds now,
-- compared with the column's collation (its unique index's rule). A locking read: it also locks
-- the index gaps of the absent values, so no one else can take them before our INSERT.
SELECT COUNT(*) FROM sync_staged_inserts n JOIN {table} o ON o.{column} = n.{column}
FOR UPDATE
