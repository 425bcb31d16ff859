"""Channels: connected social accounts and their providers."""
