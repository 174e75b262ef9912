-- New rows whose InternalUserID appeared since the plan was made.
SELECT COUNT(*) FROM sync_staged_inserts n JOIN {table} u ON u.InternalUserID = n.InternalUserID
