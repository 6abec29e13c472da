"""One portrait per customer from a customer table and an order log of the same dataset.

When a dataset holds both, the features of each (:func:`custseg.features.sql.feature_query`)
are joined per customer: a FULL OUTER JOIN on ``customer_id``, so every customer of either
source is a row. The result's columns:

- numeric: the customer table's numeric features, then the order log's transaction features
  (:data:`~custseg.features.build.TRANSACTION_FEATURES`); a customer without orders has
  ``frequency``, ``monetary``, ``avg_order_value`` and ``return_share`` 0 (no orders, no
  spend, nothing returned) and no ``recency_days``, ``tenure_days`` or
  ``mean_interval_days`` (missing: the model's imputer fills them); a customer missing from
  the customer table has its numeric features missing;
- categorical: the customer table's, then the order log's per-customer modes; a customer
  absent from one source has :data:`~custseg.features.build.MISSING_CATEGORY` in its
  categories;
- extras: both sources' attributes and outcomes;
- value: ``monetary`` (0 without orders).

A name both sources give is taken from the customer table, except the transaction
features, which always come from the order log.
"""

from __future__ import annotations

from custseg.features.build import MISSING_CATEGORY, TRANSACTION_FEATURES
from custseg.features.sql import FeatureQuery, literal, quote
from custseg.ingest.contracts.model import Contract, Grain, Role, normalise_header

COMBINED = "combined"
"""The kind of features (and of a model's :class:`~custseg.features.build.FeatureSchema`)
joined from a customer table and an order log."""

CUSTOMERS, ORDERS = "customers", "transactions"
"""The dataset-state kinds whose parts a combined model reads."""

ZERO_WITHOUT_ORDERS = ("frequency", "monetary", "avg_order_value", "return_share")
"""Transaction features that are 0 for a customer without orders (the others are missing)."""


def combined_query(customers: FeatureQuery, orders: FeatureQuery) -> FeatureQuery:
    """The feature query joining ``customers`` (a customer table's) and ``orders`` (an
    order log's) per customer; both must have the same as-of date."""
    if customers.kind != "customers" or orders.kind != "transactions":
        raise ValueError("a combined portrait joins a customer table's and an order log's features")
    taken = set(TRANSACTION_FEATURES)
    select: list[str] = ["COALESCE(c.customer_id, t.customer_id) AS customer_id"]
    numeric, categorical, extras = [], [], []
    for name in customers.numeric:
        if name not in taken:
            taken.add(name)
            numeric.append(name)
            select.append(f"c.{quote(name)} AS {quote(name)}")
    for name in orders.numeric:
        expr = f"t.{quote(name)}"
        if name in ZERO_WITHOUT_ORDERS:
            expr = f"COALESCE({expr}, CAST(0 AS DOUBLE))"
        numeric.append(name)
        select.append(f"{expr} AS {quote(name)}")
    for side, query in (("c", customers), ("t", orders)):
        for name in query.categorical:
            if name not in taken:
                taken.add(name)
                categorical.append(name)
                fill = literal(MISSING_CATEGORY)
                select.append(f"COALESCE({side}.{quote(name)}, {fill}) AS {quote(name)}")
    for side, query in (("c", customers), ("t", orders)):
        for name in query.extras:
            if name not in taken:
                taken.add(name)
                extras.append(name)
                select.append(f"{side}.{quote(name)} AS {quote(name)}")
    for name in orders.history:  # missing for a customer without orders
        select.append(f"t.{quote(name)} AS {quote(name)}")
    sql = (
        "SELECT\n    "
        + ",\n    ".join(select)
        + f"\nFROM (\n{customers.sql}\n) AS c\nFULL OUTER JOIN (\n{orders.sql}\n) AS t"
        + "\n    ON c.customer_id = t.customer_id\nORDER BY 1"
    )
    return FeatureQuery(
        sql=sql,
        numeric=numeric,
        categorical=categorical,
        extras=extras,
        value="monetary",
        kind=COMBINED,
        as_of=orders.as_of,
        value_name="monetary",
        history=list(orders.history),
    )


def combined_contract(customers: Contract, orders: Contract) -> Contract:
    """One contract naming the columns of both sources (the customer table's first; an
    order-log column of a name the customer table has is left out, as are the order log's
    customer id and header aliases): what profiles and metrics read of a combined run."""
    headers = customers.header_map()
    extra = [
        c.model_copy(update={"aliases": []})
        for c in orders.columns
        if normalise_header(c.name) not in headers and c.role != Role.CUSTOMER_ID
    ]
    return Contract(
        kind=COMBINED,
        grain=Grain.CUSTOMER,
        version=f"{customers.kind}:{customers.version}+{orders.kind}:{orders.version}",
        description=f"{customers.kind} joined with {orders.kind} per customer",
        columns=[*customers.columns, *extra],
        value_columns=["monetary", *customers.value_columns],
    )
