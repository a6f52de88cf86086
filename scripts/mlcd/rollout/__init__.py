"""Controlled rollout: the judge, environment state, the local and Kubernetes targets."""
