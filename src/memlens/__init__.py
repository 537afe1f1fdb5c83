"""memlens: measure, predict and control memorization in language models."""

__version__ = "0.1.0"
