"""Hooks: Airflow connections turned into kitflow's RegistryOptions and ArgoOptions."""

from kitflow_airflow.hooks.argo import ArgoHook
from kitflow_airflow.hooks.registry import KitRegistryHook

__all__ = ["ArgoHook", "KitRegistryHook"]
