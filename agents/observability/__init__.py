"""The worker's metrics, health and consumer lag."""
