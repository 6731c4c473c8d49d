"""The toy world: an offline miniature of the whole study (see world.py and pipeline.py)."""
