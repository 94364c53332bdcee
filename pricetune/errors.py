"""The one error type pricetune raises for problems the user can fix.

The CLI catches it and prints its message without a traceback; anything else is a bug and keeps its
traceback.
"""


class PricetuneError(Exception):
    """A problem with the user's input (config, data, model path, hub access) and how to fix it."""


class ConfigError(PricetuneError):
    """One or more config values are invalid; the message lists every problem."""


class DataError(PricetuneError):
    """A dataset row, file or split is unusable; the message names the file and line or row."""
