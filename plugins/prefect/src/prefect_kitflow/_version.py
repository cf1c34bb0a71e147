"""The version of prefect-kitflow (folded into cache keys so upgrades start fresh)."""

__version__ = "0.1.0"
