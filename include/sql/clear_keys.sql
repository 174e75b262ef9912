-- Step 1 of a swap-safe update: free the values other staged rows are about to take (found by
-- held_by_other_rows.sql, so under the column's collation). The rows are locked already.
UPDATE {table} SET {column} = NULL WHERE UserID IN ({ids})
