"""marketplace domain."""
