-- Width and character set of the text columns the sync writes, as the server declares them.
SELECT COLUMN_NAME, CHARACTER_MAXIMUM_LENGTH, CHARACTER_SET_NAME
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s
  AND COLUMN_NAME IN ('CognitoID', 'Email', 'FirstName', 'LastName')
