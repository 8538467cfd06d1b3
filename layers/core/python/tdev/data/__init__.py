"""Data access: the single DynamoDB table and the repositories over it."""
