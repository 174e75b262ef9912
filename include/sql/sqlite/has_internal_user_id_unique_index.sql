-- A unique index (or UNIQUE constraint) whose only column is InternalUserID.
SELECT COUNT(*) FROM pragma_index_list(%s) AS il
WHERE il."unique" = 1
  AND (SELECT COUNT(*) FROM pragma_index_info(il.name)) = 1
  AND (SELECT name FROM pragma_index_info(il.name)) = 'InternalUserID'
