"""Delivery to the sinks: the loops, the retry and breaker policy, the ledger, dead letters."""
