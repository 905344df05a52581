"""The human queue: the SLA clock and support staff's label corrections."""
