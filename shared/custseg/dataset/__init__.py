"""Stage 2, the dataset: the clean data a dataset holds."""
