"""Stage 4, the model: training, labels, personas and the signed artifact."""
