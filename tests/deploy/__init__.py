"""Deploy checks: the Helm chart, the plain manifests and skaffold.yaml, proven by rendering."""
