"""The channel runtime: deployed channels and the message pipeline (kernel internal)."""
