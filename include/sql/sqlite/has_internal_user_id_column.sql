SELECT COUNT(*) FROM pragma_table_info(%s) WHERE name = 'InternalUserID'
