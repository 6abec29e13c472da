"""Per-customer predictions fitted beside the segments, stored in the model artifact and
applied at scoring: propensities (:mod:`custseg.predict.propensity`) and customer value
(:mod:`custseg.predict.clv`); see docs/predictions.md."""
