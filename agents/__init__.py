"""The Faust app: classify and route agents, routing rules, sinks and metrics."""
