DROP TEMPORARY TABLE IF EXISTS sync_staged_changes, sync_staged_inserts
