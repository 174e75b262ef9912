DROP TABLE IF EXISTS temp.sync_staged_ids
