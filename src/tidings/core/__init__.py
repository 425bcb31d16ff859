"""Helpers shared by every domain: one of each (ids, crypto, URL guard, errors, jobs, ORM base)."""
