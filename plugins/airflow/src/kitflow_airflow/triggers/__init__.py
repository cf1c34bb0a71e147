"""Triggers that run in Airflow's triggerer."""
