"""Test support shared by every environment: real servers started on loopback, fakes, helpers."""
