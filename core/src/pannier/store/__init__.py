"""The message store: Mirth's schema and the batch-shaped write path (kernel internal)."""
