"""Sensors: wait for Argo Workflows started elsewhere."""
