"""Dagster integration for kitflow: ModelKit assets, resources and Argo inference."""
