DROP TEMPORARY TABLE IF EXISTS sync_staged_cognito_ids, sync_staged_emails, sync_staged_inserts
