"""qtsafe: fail-closed safety gates for the trading system's ML models."""

from __future__ import annotations

__version__ = "0.1.0"
