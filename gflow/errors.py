"""gflow's error for bad input, in a module of its own so that light paths (``gflow plot``)
raise and catch it without importing the config machinery, the models or JAX."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A bad config value; ``str(err)`` is one line naming the field and what is valid."""
