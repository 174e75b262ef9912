-- How many staged inserts carry a key value another staged insert carries too (column's collation).
SELECT COUNT({column}) - COUNT(DISTINCT {column}) FROM sync_staged_inserts
