"""Telemetry adapters: Prometheus metrics served at ``/metrics``."""
