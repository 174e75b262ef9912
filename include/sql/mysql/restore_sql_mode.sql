SET SESSION sql_mode = %s
