DROP TABLE IF EXISTS temp.sync_staged_changes;
DROP TABLE IF EXISTS temp.sync_staged_inserts
