"""Airflow provider for kitflow: ModelKit operators and deferrable Argo inference."""
