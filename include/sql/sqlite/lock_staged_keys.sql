-- BEGIN IMMEDIATE already holds SQLite's only write lock: nothing else can change a row.
SELECT COUNT(*) FROM {staged}
