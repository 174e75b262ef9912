-- Rows taken out of the apply (already done, or a conflict).
DELETE FROM {staged} WHERE UserID IN ({ids})
