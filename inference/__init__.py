"""Rubble inference backend: shot directory in, generated frames out (see docs/contract.md)."""

__version__ = "0.1.0"
