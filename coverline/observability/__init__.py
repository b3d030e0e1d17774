"""Prometheus metrics, structured logs and request ids (docs/operations.md)."""
