"""What the proxy shows: Prometheus metrics and the admin port."""
