"""Stage 5, scoring: assignments, mergeable statistics, metrics and profiles."""
