"""Per-customer predictions stored in a model artifact and applied at scoring."""
