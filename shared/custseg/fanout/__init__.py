"""The fanned-out path: a large upload split into byte ranges, features by Athena, scoring
by feature bucket (see docs/fanout.md)."""
