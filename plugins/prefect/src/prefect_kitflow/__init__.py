"""Prefect integration for kitflow: ModelKit tasks, credential blocks and Argo inference."""
