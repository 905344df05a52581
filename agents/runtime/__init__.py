"""The Faust app and what keeps it at-least-once: commit rule, agent loop, stop deadline."""
