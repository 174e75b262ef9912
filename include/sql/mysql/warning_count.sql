SELECT @@warning_count
