DROP TABLE IF EXISTS temp.sync_staged_cognito_ids;
DROP TABLE IF EXISTS temp.sync_staged_emails;
DROP TABLE IF EXISTS temp.sync_staged_inserts
