"""Layer 3: graph operations written once over targets (copy, pack, unpack, store upkeep)."""
