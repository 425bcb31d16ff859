"""posts domain."""
