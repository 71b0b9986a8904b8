"""Exceptions that carry a message naming the file, column, row or task at fault."""


class MtlkitError(Exception):
    """Base class for all errors raised by mtlkit on bad input or configuration."""


class DataError(MtlkitError, ValueError):
    """The data does not match the schema (missing column, bad label, empty file, leakage...)."""


class ConfigError(MtlkitError, ValueError):
    """The configuration is invalid."""


class DatasetNotFoundError(MtlkitError, FileNotFoundError):
    """A dataset's files are not where mtlkit looked for them."""
