"""Data contracts: declarative, per dataset kind (see :mod:`custseg.ingest.contracts.model`)."""

from custseg.ingest.contracts.model import (
    BUILTIN_KINDS,
    ColumnSpec,
    ColumnType,
    Contract,
    DedupeRule,
    MissingPolicy,
    OutlierMethod,
    OutlierPolicy,
    Role,
    TransactionRules,
    builtin_contract,
    load_contract,
    normalise_header,
)

__all__ = [
    "BUILTIN_KINDS",
    "ColumnSpec",
    "ColumnType",
    "Contract",
    "DedupeRule",
    "MissingPolicy",
    "OutlierMethod",
    "OutlierPolicy",
    "Role",
    "TransactionRules",
    "builtin_contract",
    "load_contract",
    "normalise_header",
]
