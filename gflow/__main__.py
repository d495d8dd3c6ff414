"""``python -m gflow``: the ``gflow`` command."""

from gflow.cli import entry

entry()
