"""Operators: ModelKit pack/push/pull/unpack, local inference, and deferrable Argo inference."""
