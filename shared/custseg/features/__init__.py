"""Stage 3, features: one row of model inputs per customer."""
