"""Layer 4: inference on ModelKits, on the local runner or on Argo Workflows."""
