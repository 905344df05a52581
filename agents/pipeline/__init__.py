"""The pipeline stages (classify, route, dedup, spikes) and the rules, vetting, tables they use."""
