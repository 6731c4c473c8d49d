"""Fields shared by the training recipes (each recipe overrides what it reproduces).

The fields, their defaults and meanings are in vlmcls_jax/defaults.py (the train job checks every config
against them, so a misspelt or mistyped field fails before anything is built); re-exported here.
"""

from vlmcls_jax.defaults import train_config  # noqa: F401
