"""The ``pannier`` command line."""
