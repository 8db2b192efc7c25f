"""Errors caused by the user's input or environment. The entry point prints them as one clear
line (what is wrong and how to fix it) instead of a traceback."""


class YopoError(Exception):
    """Base class: bad input or a missing resource, with a message that names the fix."""


class ConfigError(YopoError, ValueError):
    """A configuration value out of range or unknown."""
