"""Per-customer predictions fitted beside the segments (see docs/predictions.md)."""
