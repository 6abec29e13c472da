"""custseg: customer profiles and market segments from the customer CSVs a business already has.

The package is the functional core (contracts, reading, validation, cleaning, features,
labels, training, personas, scoring, metrics, profiles, reports: no AWS imports) plus
the adapters at its edges (``custseg.aws`` for S3/EventBridge, ``custseg.local`` for the
emulated stack and the command line).
"""

__version__ = "0.1.0"
