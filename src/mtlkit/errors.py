"""Exceptions that carry a message naming the file, column, row or task at fault, and how
mtlkit's own warnings are printed."""

import warnings
from pathlib import Path

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_python_format = warnings.formatwarning


class MtlkitError(Exception):
    """Base class for all errors raised by mtlkit on bad input or configuration."""


class DataError(MtlkitError, ValueError):
    """The data does not match the schema (missing column, bad label, empty file, leakage...)."""


class ConfigError(MtlkitError, ValueError):
    """The configuration is invalid."""


class DatasetNotFoundError(MtlkitError, FileNotFoundError):
    """A dataset's files are not where mtlkit looked for them."""


class UnknownNameError(ConfigError, KeyError):
    """A name that no registry knows (model, balancer, dataset, loss, ...)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ParameterError(ConfigError, TypeError):
    """A parameter that a registered model / balancer / dataset does not take."""


def format_warning(message, category, filename, lineno, line=None) -> str:
    """``warning: <Category>: message`` for warnings raised by mtlkit (their messages name what
    is at fault; the source line would be noise), Python's usual format for anything else."""
    if category.__module__.startswith("mtlkit") or str(filename).startswith(_PACKAGE_DIR):
        return f"warning: {category.__name__}: {message}\n"
    return _python_format(message, category, filename, lineno, line)
