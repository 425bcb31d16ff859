"""Tidings: self-hosted social media scheduling for teams and agencies."""

__version__ = "0.1.0"
