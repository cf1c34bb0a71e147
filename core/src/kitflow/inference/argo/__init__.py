"""The Argo Workflows backend: build a Workflow for a job, submit it (Argo Server or Kubernetes
API), follow it, and collect its results from the OCI registry."""
