"""Layer 2: content targets (local store, registry, OCI layout) behind one interface."""
