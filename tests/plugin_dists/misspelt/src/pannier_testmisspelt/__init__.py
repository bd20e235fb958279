"""A plugin with a misspelt hook name: start-up must fail and name it."""

from pannier import hookimpl


@hookimpl
def pannier_register_conectors():
    return []
