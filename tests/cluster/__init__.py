"""The chart on a real single-node Kubernetes cluster (scripts/cluster/)."""
