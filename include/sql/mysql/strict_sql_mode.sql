-- A value that does not fit is an error, never a silent truncation, whatever the server's default.
SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')
