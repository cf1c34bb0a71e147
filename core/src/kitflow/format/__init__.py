"""Layer 1: the ModelKit format (Kitfile, media types, descriptors, tar bytes, JSON bytes)."""
