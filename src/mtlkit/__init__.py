"""mtlkit: multi-task learning for ranking and beyond."""

__version__ = "0.1.0"
