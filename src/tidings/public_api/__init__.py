"""public_api domain."""
