"""Generated sample data for ``custseg demo``: a CRM customer export and an order log.

:func:`write_demo_data` writes two files that look like what marketing teams upload:

``customers.csv``
    About 5,000 customers of a European online shop, one row per customer, as a CRM
    exports them: comma-separated, UTF-8 with a byte-order mark, Windows line ends,
    headers such as ``Customer ID``, ``E-mail``, ``Annual Income`` and
    ``Tenure (months)`` that the default customers contract accepts through its aliases.
    Five real latent groups are mixed in (young trend-setters on low incomes who spend
    a lot, affluent professionals, families, seniors, bargain hunters); an outcome
    column (``Accepted Offer``) responds differently per group, so segment lift can be
    measured. Personal columns (name, e-mail, phone) are present, as in any real export.

``orders.csv``
    About 30,000 invoices of about 2,000 of those customers over the 18 months up to
    :data:`END` (2026-10-31), one row per invoice like the UCI Online Retail file
    (``InvoiceNo;InvoiceDate;CustomerID;Country;Quantity;UnitPrice``), but as a German
    spreadsheet exports it: semicolon-delimited, day-first dates (``31.10.2026 14:05``)
    and decimal commas (``3,95``). Customers follow lifecycle patterns that give RFM
    variety: champions, loyal regulars, new customers, at-risk (once frequent, quiet
    for months), lapsed (gone for the last year) and occasional buyers.

Both files carry the dirt real files carry, in known amounts (see :data:`DIRT`):
duplicate rows, repeated customer ids, ids with leading zeros, blanks in numeric
columns, inconsistent case and whitespace in categories, impossible ages, text in
number columns, extreme incomes, spreadsheet-formula values in text columns,
cancellations (``C`` invoices with negative quantities), zero prices, bulk-order
outliers and guest orders without a customer id.

Deterministic for a seed (``numpy.random.default_rng``); writes both files in well
under a second. No personal data here is real: names are drawn from short lists,
e-mails use ``example.com``/``example.org`` and phone numbers are random digits.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CUSTOMERS_FILE = "customers.csv"
ORDERS_FILE = "orders.csv"

# The export date: the order log ends here and the customer table is "as of" it.
END = dt.datetime(2026, 10, 31, 23, 59)
START = dt.datetime(2025, 5, 1, 0, 0)  # 18 months of orders

N_CUSTOMERS = 5_000
N_ORDER_CUSTOMERS = 2_000

CUSTOMER_HEADERS = [
    "Customer ID",
    "Full Name",
    "E-mail",
    "Phone",
    "Gender",
    "Age",
    "Marital Status",
    "Children",
    "Education",
    "Occupation",
    "Annual Income",
    "Country",
    "City",
    "Tenure (months)",
    "Signup Date",
    "Last Purchase Date",
    "Number of Orders",
    "Total Spend",
    "Spending Score",
    "Preferred Channel",
    "Favourite Category",
    "Accepted Offer",
]
# Canonical names (default customers contract) the headers above map to.
CUSTOMER_CANONICAL = {
    "Customer ID": "customer_id",
    "Full Name": "name",
    "E-mail": "email",
    "Phone": "phone",
    "Gender": "gender",
    "Age": "age",
    "Marital Status": "marital_status",
    "Children": "children",
    "Education": "education",
    "Occupation": "occupation",
    "Annual Income": "annual_income",
    "Country": "country",
    "City": "city",
    "Tenure (months)": "tenure",
    "Signup Date": "signup_date",
    "Last Purchase Date": "last_purchase_date",
    "Number of Orders": "orders",
    "Total Spend": "total_spend",
    "Spending Score": "spending_score",
    "Preferred Channel": "channel",
    "Favourite Category": "preferred_category",
    "Accepted Offer": "campaign_response",
}
ORDER_HEADERS = ["InvoiceNo", "InvoiceDate", "CustomerID", "Country", "Quantity", "UnitPrice"]
ORDER_CANONICAL = {
    "InvoiceNo": "invoice_id",
    "InvoiceDate": "event_time",
    "CustomerID": "customer_id",
    "Country": "country",
    "Quantity": "quantity",
    "UnitPrice": "unit_price",
}

# How much of each kind of dirt is planted (exact counts; blanks are a share per column).
DIRT: dict[str, Any] = {
    "customers": {
        "blank_share_per_numeric_column": 0.01,
        "exact_duplicate_rows": 40,
        "repeated_customer_ids": 25,  # a newer record of the same customer, appended
        "impossible_ages": [230, 999, -4, 151],
        "text_in_numbers": {
            "Annual Income": ["n/a", "n/a", "n/a", "abc", "abc"],
            "Age": ["thirty"],
        },
        "extreme_incomes": [1_750_000, 2_500_000, 4_800_000, 9_900_000],
        "formula_values": 2,  # one in Full Name (personal), one in City
    },
    "orders": {
        "cancellation_share": 0.035,
        "zero_price_rows": 60,
        "stock_adjustments": 15,  # quantity 0, not a cancellation
        "bulk_outliers": 4,
        "guest_orders": 150,  # no customer id
        "exact_duplicate_rows": 30,
    },
}

# ---------------------------------------------------------------------- the latent groups
#: name -> share of customers and how they look. Incomes are yearly, in euros.
GROUPS: dict[str, dict[str, Any]] = {
    "young_trendsetters": {
        "share": 0.20,
        "age": (24, 3.5, 18, 34),
        "income": (31_000, 8_000),
        "score": (80, 9),
        "tenure": (1, 30),
        "orders": 14,
        "aov": (48, 12),
        "recency": 25,
        "children": [0.92, 0.08, 0.0, 0.0],
        "marital": {"Single": 0.8, "Married": 0.1, "Divorced": 0.1},
        "education": {"High School": 0.35, "Bachelor": 0.55, "Master": 0.1},
        "occupation": {"Student": 0.45, "Service": 0.3, "Creative": 0.25},
        "channel": {"App": 0.6, "Online": 0.35, "Store": 0.05},
        "category": {"Fashion": 0.55, "Electronics": 0.35, "Beauty": 0.1},
        "response": 0.24,
        "lifecycle": {
            "champion": 0.15,
            "loyal": 0.2,
            "new": 0.25,
            "at_risk": 0.1,
            "lapsed": 0.1,
            "occasional": 0.2,
        },
    },
    "affluent_professionals": {
        "share": 0.18,
        "age": (43, 7, 27, 62),
        "income": (128_000, 22_000),
        "score": (76, 8),
        "tenure": (12, 110),
        "orders": 10,
        "aov": (210, 45),
        "recency": 35,
        "children": [0.7, 0.2, 0.1, 0.0],
        "marital": {"Married": 0.6, "Single": 0.3, "Divorced": 0.1},
        "education": {"Master": 0.5, "PhD": 0.2, "Bachelor": 0.3},
        "occupation": {"Manager": 0.4, "Professional": 0.45, "Executive": 0.15},
        "channel": {"Online": 0.6, "Store": 0.3, "App": 0.1},
        "category": {"Electronics": 0.4, "Home": 0.3, "Travel": 0.3},
        "response": 0.16,
        "lifecycle": {
            "champion": 0.35,
            "loyal": 0.3,
            "new": 0.05,
            "at_risk": 0.15,
            "lapsed": 0.05,
            "occasional": 0.1,
        },
    },
    "families": {
        "share": 0.24,
        "age": (38, 6, 26, 55),
        "income": (63_000, 10_000),
        "score": (50, 7),
        "tenure": (6, 130),
        "orders": 20,
        "aov": (80, 15),
        "recency": 20,
        "children": [0.0, 0.3, 0.45, 0.25],
        "marital": {"Married": 0.8, "Divorced": 0.12, "Single": 0.08},
        "education": {"Bachelor": 0.45, "High School": 0.35, "Master": 0.2},
        "occupation": {"Professional": 0.35, "Service": 0.3, "Trades": 0.35},
        "channel": {"Online": 0.5, "Store": 0.4, "App": 0.1},
        "category": {"Groceries": 0.4, "Kids": 0.4, "Home": 0.2},
        "response": 0.10,
        "lifecycle": {
            "champion": 0.2,
            "loyal": 0.4,
            "new": 0.05,
            "at_risk": 0.15,
            "lapsed": 0.05,
            "occasional": 0.15,
        },
    },
    "seniors": {
        "share": 0.18,
        "age": (70, 6, 60, 92),
        "income": (37_000, 9_000),
        "score": (30, 10),
        "tenure": (36, 200),
        "orders": 6,
        "aov": (62, 16),
        "recency": 60,
        "children": [0.9, 0.07, 0.03, 0.0],
        "marital": {"Married": 0.55, "Widowed": 0.3, "Divorced": 0.1, "Single": 0.05},
        "education": {"High School": 0.6, "Bachelor": 0.3, "Master": 0.1},
        "occupation": {"Retired": 0.9, "Professional": 0.05, "Service": 0.05},
        "channel": {"Store": 0.7, "Online": 0.25, "App": 0.05},
        "category": {"Home": 0.35, "Garden": 0.4, "Health": 0.25},
        "response": 0.05,
        "lifecycle": {
            "champion": 0.05,
            "loyal": 0.25,
            "new": 0.05,
            "at_risk": 0.2,
            "lapsed": 0.25,
            "occasional": 0.2,
        },
    },
    "bargain_hunters": {
        "share": 0.20,
        "age": (35, 10, 18, 70),
        "income": (41_000, 9_000),
        "score": (14, 6),
        "tenure": (3, 60),
        "orders": 28,
        "aov": (18, 5),
        "recency": 15,
        "children": [0.65, 0.25, 0.1, 0.0],
        "marital": {"Single": 0.45, "Married": 0.4, "Divorced": 0.15},
        "education": {"High School": 0.5, "Bachelor": 0.4, "Master": 0.1},
        "occupation": {"Service": 0.4, "Trades": 0.35, "Student": 0.25},
        "channel": {"App": 0.45, "Online": 0.5, "Store": 0.05},
        "category": {"Deals": 0.6, "Groceries": 0.3, "Fashion": 0.1},
        "response": 0.12,
        "lifecycle": {
            "champion": 0.1,
            "loyal": 0.25,
            "new": 0.1,
            "at_risk": 0.15,
            "lapsed": 0.15,
            "occasional": 0.25,
        },
    },
}

COUNTRIES: dict[str, tuple[float, list[str], str]] = {
    # country -> (share, cities, phone prefix)
    "Germany": (0.35, ["Berlin", "Hamburg", "Munich", "Cologne", "Leipzig"], "+49"),
    "France": (0.2, ["Paris", "Lyon", "Marseille", "Lille"], "+33"),
    "United Kingdom": (0.15, ["London", "Manchester", "Leeds", "Bristol"], "+44"),
    "Spain": (0.12, ["Madrid", "Barcelona", "Valencia"], "+34"),
    "Netherlands": (0.1, ["Amsterdam", "Rotterdam", "Utrecht"], "+31"),
    "Austria": (0.08, ["Vienna", "Graz", "Salzburg"], "+43"),
}

FIRST_NAMES = [
    "Anna", "Lukas", "Marie", "Paul", "Sophie", "Leon", "Emma", "Jonas", "Mia", "Felix",
    "Camille", "Hugo", "Chloe", "Louis", "Olivia", "Jack", "Amelia", "Harry", "Lucia",
    "Mateo", "Sofia", "Daan", "Julia", "Sem", "Lena", "Tobias", "Ines", "Pablo", "Clara",
    "Noah", "Elena", "Finn", "Hannah", "Oscar", "Ava", "Ruben", "Zoe", "Max", "Laura", "Tim",
]  # fmt: skip
LAST_NAMES = [
    "Muller", "Schmidt", "Schneider", "Fischer", "Weber", "Martin", "Bernard", "Dubois",
    "Smith", "Jones", "Taylor", "Brown", "Garcia", "Lopez", "Martinez", "de Jong", "Jansen",
    "Visser", "Gruber", "Huber", "Wagner", "Becker", "Hoffmann", "Moreau", "Laurent",
    "Wilson", "Evans", "Sanchez", "Bakker", "Koch",
]  # fmt: skip

LIFECYCLES = ("champion", "loyal", "new", "at_risk", "lapsed", "occasional")


# ---------------------------------------------------------------------- helpers
def _pick(rng: np.random.Generator, choices: dict[str, float], n: int) -> np.ndarray:
    names = list(choices)
    p = np.array([choices[k] for k in names], dtype=float)
    return np.array(names, dtype=object)[rng.choice(len(names), size=n, p=p / p.sum())]


def _fmt_int(values: np.ndarray) -> np.ndarray:
    return np.array([str(int(v)) for v in values], dtype=object)


def _plant(
    rng: np.random.Generator, column: np.ndarray, values: list[Any], taken: set[int]
) -> list[int]:
    """Write ``values`` into random distinct rows of ``column`` not yet in ``taken``."""
    rows: list[int] = []
    while len(rows) < len(values):
        i = int(rng.integers(len(column)))
        if i not in taken:
            taken.add(i)
            rows.append(i)
    for i, v in zip(rows, values, strict=True):
        column[i] = str(v)
    return rows


# ---------------------------------------------------------------------- customers
def _customers(rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The customer table (all text, dirt planted) and the clean truth used for orders."""
    n = N_CUSTOMERS
    names = list(GROUPS)
    shares = np.array([GROUPS[g]["share"] for g in names])
    group = rng.choice(len(names), size=n, p=shares / shares.sum())

    age = np.zeros(n)
    income = np.zeros(n)
    score = np.zeros(n)
    tenure = np.zeros(n)
    n_orders = np.zeros(n)
    aov = np.zeros(n)
    recency = np.zeros(n)
    children = np.zeros(n, dtype=int)
    response_p = np.zeros(n)
    cols: dict[str, np.ndarray] = {
        k: np.empty(n, dtype=object)
        for k in ("marital", "education", "occupation", "channel", "category", "lifecycle")
    }
    for gi, gname in enumerate(names):
        g = GROUPS[gname]
        idx = np.flatnonzero(group == gi)
        m = len(idx)
        mu, sd, lo, hi = g["age"]
        age[idx] = np.clip(np.round(rng.normal(mu, sd, m)), lo, hi)
        income[idx] = np.maximum(9_000, rng.normal(g["income"][0], g["income"][1], m)).round(-2)
        score[idx] = np.clip(np.round(rng.normal(g["score"][0], g["score"][1], m)), 1, 100)
        tenure[idx] = rng.integers(g["tenure"][0], g["tenure"][1] + 1, m)
        n_orders[idx] = np.maximum(1, rng.poisson(g["orders"], m))
        aov[idx] = np.maximum(5.0, rng.normal(g["aov"][0], g["aov"][1], m))
        recency[idx] = np.minimum(np.round(rng.exponential(g["recency"], m)), 700)
        children[idx] = rng.choice(4, size=m, p=g["children"])
        response_p[idx] = g["response"]
        for key, src in (
            ("marital", "marital"),
            ("education", "education"),
            ("occupation", "occupation"),
            ("channel", "channel"),
            ("category", "category"),
            ("lifecycle", "lifecycle"),
        ):
            cols[key][idx] = _pick(rng, g[src], m)

    country_names = list(COUNTRIES)
    cshares = np.array([COUNTRIES[c][0] for c in country_names])
    country_idx = rng.choice(len(country_names), size=n, p=cshares / cshares.sum())
    country = np.array(country_names, dtype=object)[country_idx]
    city = np.array(
        [COUNTRIES[c][1][int(rng.integers(len(COUNTRIES[c][1])))] for c in country], dtype=object
    )
    gender = np.where(rng.random(n) < 0.52, "Female", "Male").astype(object)
    gender[rng.random(n) < 0.015] = "Other"

    first = np.array(FIRST_NAMES, dtype=object)[rng.integers(len(FIRST_NAMES), size=n)]
    last = np.array(LAST_NAMES, dtype=object)[rng.integers(len(LAST_NAMES), size=n)]
    full_name = np.array([f"{f} {s}" for f, s in zip(first, last, strict=True)], dtype=object)
    domains = np.array(["example.com", "example.org", "example.net"], dtype=object)
    email = np.array(
        [
            f"{f.lower()}.{s.lower().replace(' ', '')}{k}@{d}"
            for f, s, k, d in zip(
                first, last, rng.integers(1, 999, n), domains[rng.integers(3, size=n)], strict=True
            )
        ],
        dtype=object,
    )
    phone = np.array(
        [
            f"{COUNTRIES[c][2]} {rng.integers(10, 99)} {rng.integers(1_000_000, 9_999_999)}"
            for c in country
        ],
        dtype=object,
    )
    total_spend = (n_orders * aov * rng.lognormal(0, 0.15, n)).round(2)
    end_day = END.date()
    signup = [
        (end_day - dt.timedelta(days=int(t * 30.44 + d))).isoformat()
        for t, d in zip(tenure, rng.integers(0, 30, n), strict=True)
    ]
    last_purchase = [(end_day - dt.timedelta(days=int(r))).isoformat() for r in recency]
    responded = rng.random(n) < response_p
    offer = np.where(responded, "Yes", "No").astype(object)
    ids = np.array([f"{i:05d}" for i in range(1, n + 1)], dtype=object)  # leading zeros

    table = pd.DataFrame(
        {
            "Customer ID": ids,
            "Full Name": full_name,
            "E-mail": email,
            "Phone": phone,
            "Gender": gender,
            "Age": _fmt_int(age),
            "Marital Status": cols["marital"],
            "Children": _fmt_int(children),
            "Education": cols["education"],
            "Occupation": cols["occupation"],
            "Annual Income": _fmt_int(income),
            "Country": country,
            "City": city,
            "Tenure (months)": _fmt_int(tenure),
            "Signup Date": np.array(signup, dtype=object),
            "Last Purchase Date": np.array(last_purchase, dtype=object),
            "Number of Orders": _fmt_int(n_orders),
            "Total Spend": np.array([f"{v:.2f}" for v in total_spend], dtype=object),
            "Spending Score": _fmt_int(score),
            "Preferred Channel": cols["channel"],
            "Favourite Category": cols["category"],
            "Accepted Offer": offer,
        },
        dtype=object,
    )
    truth = {
        "id": ids,
        "group": np.array(names, dtype=object)[group],
        "lifecycle": cols["lifecycle"],
        "country": country,
        "aov": aov,
    }
    return _dirty_customers(rng, table), truth


def _dirty_customers(rng: np.random.Generator, table: pd.DataFrame) -> pd.DataFrame:
    dirt = DIRT["customers"]
    n = len(table)
    arrays = {c: table[c].to_numpy(dtype=object).copy() for c in table.columns}
    taken: set[int] = set()

    # Inconsistent case / whitespace / abbreviations in categories.
    g = arrays["Gender"]
    variants = {
        "Female": ["female", " Female ", "F", "FEMALE", "f", "Woman"],
        "Male": ["male", " Male", "M", "MALE", "m ", "Man"],
    }
    noisy = np.flatnonzero(rng.random(n) < 0.12)
    for i in noisy:
        if g[i] in variants:
            g[i] = variants[g[i]][int(rng.integers(len(variants[g[i]])))]
    c = arrays["Country"]
    for i in np.flatnonzero(rng.random(n) < 0.04):
        c[i] = [str(c[i]).lower(), f" {c[i]}", str(c[i]).upper()][int(rng.integers(3))]
    ch = arrays["Preferred Channel"]
    for i in np.flatnonzero(rng.random(n) < 0.03):
        ch[i] = str(ch[i]).lower() + " "
    o = arrays["Accepted Offer"]
    for i in np.flatnonzero(rng.random(n) < 0.05):
        o[i] = {"Yes": ["yes", "Y", "TRUE"], "No": ["no", "N", "FALSE"]}[o[i]][int(rng.integers(3))]
    o[rng.random(n) < 0.01] = ""

    # Blanks in numeric columns (about 1% each).
    for col in ("Age", "Annual Income", "Spending Score", "Tenure (months)", "Total Spend",
                "Number of Orders"):  # fmt: skip
        arrays[col][rng.random(n) < dirt["blank_share_per_numeric_column"]] = ""
    for col in ("Gender", "City", "Education"):
        arrays[col][rng.random(n) < 0.005] = ""

    # Wrong values, wrong types, outliers and formula-looking text (distinct rows).
    _plant(rng, arrays["Age"], dirt["impossible_ages"], taken)
    for col, values in dirt["text_in_numbers"].items():
        _plant(rng, arrays[col], values, taken)
    _plant(rng, arrays["Annual Income"], dirt["extreme_incomes"], taken)
    _plant(rng, arrays["Full Name"], ['=HYPERLINK("http://example.com/x","Click me")'], taken)
    _plant(rng, arrays["City"], ["=1+2*cmd|' /C calc'!A0"], taken)

    dirty = pd.DataFrame(arrays, dtype=object)

    # A newer record of some customers, appended as a second export batch would be.
    again = rng.choice(np.setdiff1d(np.arange(n), list(taken)), dirt["repeated_customer_ids"],
                       replace=False)  # fmt: skip
    newer = dirty.iloc[np.sort(again)].copy()
    newer["Last Purchase Date"] = (END.date() - dt.timedelta(days=1)).isoformat()
    spend = pd.to_numeric(newer["Total Spend"], errors="coerce").fillna(0.0) + 49.9
    newer["Total Spend"] = [f"{v:.2f}" for v in spend]
    newer["Number of Orders"] = [
        str(int(v) + 1) if str(v).isdigit() else v for v in newer["Number of Orders"]
    ]
    dirty = pd.concat([dirty, newer], ignore_index=True)

    # Exact duplicate rows (a double export), inserted next to their originals.
    dup_idx = rng.choice(np.setdiff1d(np.arange(n), list(taken)), dirt["exact_duplicate_rows"],
                         replace=False)  # fmt: skip
    order = np.concatenate([np.arange(len(dirty)), np.sort(dup_idx)])
    pos = np.concatenate([np.arange(len(dirty), dtype=float), np.sort(dup_idx) + 0.5])
    return dirty.iloc[order[np.argsort(pos, kind="stable")]].reset_index(drop=True)


# ---------------------------------------------------------------------- orders
def _order_times(rng: np.random.Generator, lifecycle: str) -> np.ndarray:
    """Order times (days since START, float) for one customer of a lifecycle pattern."""
    span = (END - START).total_seconds() / 86_400
    if lifecycle == "champion":
        begin, stop, gap = rng.uniform(0, 60), span, rng.uniform(10, 18)
    elif lifecycle == "loyal":
        begin, stop, gap = rng.uniform(0, 120), span, rng.uniform(30, 50)
    elif lifecycle == "new":
        begin, stop, gap = span - rng.uniform(5, 80), span, rng.uniform(12, 30)
    elif lifecycle == "at_risk":
        begin, stop, gap = rng.uniform(0, 90), span - rng.uniform(120, 240), rng.uniform(14, 24)
    elif lifecycle == "lapsed":
        begin, stop, gap = rng.uniform(0, 60), rng.uniform(120, 200), rng.uniform(25, 60)
    else:  # occasional
        k = 1 + int(rng.poisson(4))
        return np.sort(rng.uniform(0, span, k))
    gaps = rng.exponential(gap, size=int((stop - begin) / gap * 3) + 3)
    times = begin + np.concatenate([[0.0], np.cumsum(gaps)])
    return times[times <= stop]


def _orders(rng: np.random.Generator, truth: dict[str, np.ndarray]) -> pd.DataFrame:
    chosen = np.sort(rng.choice(len(truth["id"]), N_ORDER_CUSTOMERS, replace=False))
    rows_cust: list[np.ndarray] = []
    rows_time: list[np.ndarray] = []
    rows_aov: list[np.ndarray] = []
    for i in chosen:
        times = _order_times(rng, str(truth["lifecycle"][i]))
        rows_cust.append(np.full(len(times), i))
        rows_time.append(times)
        rows_aov.append(truth["aov"][i] * rng.lognormal(0, 0.35, len(times)))
    cust = np.concatenate(rows_cust)
    days = np.concatenate(rows_time)
    value = np.concatenate(rows_aov)
    # Shop hours: 07:00-23:00.
    days = np.floor(days) + rng.uniform(7 / 24, 23 / 24, len(days))
    qty = np.maximum(1, rng.poisson(np.clip(value / 9.0, 1, 60)))
    price = np.maximum(0.39, value / qty).round(2)
    dirt = DIRT["orders"]
    n = len(days)
    ids = truth["id"][cust].astype(object)
    country = truth["country"][cust].astype(object)
    cancel = np.zeros(n, dtype=bool)

    # Cancellations: a credit note a few days after some invoices (negative quantity).
    src = np.flatnonzero(rng.random(n) < dirt["cancellation_share"])
    c_days = np.minimum(days[src] + rng.uniform(0.1, 10, len(src)), days.max())
    c_qty = -np.maximum(1, np.round(qty[src] * rng.uniform(0.2, 1.0, len(src))))
    days = np.concatenate([days, c_days])
    qty = np.concatenate([qty, c_qty]).astype(float)
    price = np.concatenate([price, price[src]])
    ids = np.concatenate([ids, ids[src]])
    country = np.concatenate([country, country[src]])
    cancel = np.concatenate([cancel, np.ones(len(src), dtype=bool)])

    # Guest orders without a customer id.
    guests = rng.choice(n, dirt["guest_orders"], replace=False)
    g_days = days[guests] + rng.uniform(-2, 2, len(guests)).clip(-days[guests], None)
    days = np.concatenate([days, np.minimum(g_days, days.max())])
    qty = np.concatenate([qty, np.maximum(1, rng.poisson(3, len(guests)))])
    price = np.concatenate([price, rng.uniform(2, 40, len(guests)).round(2)])
    ids = np.concatenate([ids, np.full(len(guests), "", dtype=object)])
    country = np.concatenate([country, country[guests]])
    cancel = np.concatenate([cancel, np.zeros(len(guests), dtype=bool)])

    order = np.argsort(days, kind="stable")
    days, qty, price, ids, country, cancel = (
        a[order] for a in (days, qty, price, ids, country, cancel)
    )
    m = len(days)
    normal = np.flatnonzero(~cancel)
    # Zero prices (free samples), stock adjustments (quantity 0) and bulk outliers.
    price[rng.choice(normal, dirt["zero_price_rows"], replace=False)] = 0.0
    qty[rng.choice(normal, dirt["stock_adjustments"], replace=False)] = 0
    bulk = rng.choice(normal, dirt["bulk_outliers"], replace=False)
    qty[bulk[:2]] = [4_800, 12_000]
    price[bulk[2:]] = [8_999.0, 15_750.0]

    invoice = 600_000 + np.arange(m)
    invoice_no = np.array(
        [("C" if c else "") + str(v) for c, v in zip(cancel, invoice, strict=True)], dtype=object
    )
    minutes = np.datetime64(START, "m") + np.round(days * 1440).astype("timedelta64[m]")
    iso = np.datetime_as_string(minutes, unit="m")  # YYYY-MM-DDTHH:MM
    frame = pd.DataFrame(
        {
            "InvoiceNo": invoice_no,
            "InvoiceDate": [f"{s[8:10]}.{s[5:7]}.{s[:4]} {s[11:16]}" for s in iso],
            "CustomerID": ids,
            "Country": country,
            "Quantity": [str(int(q)) for q in qty],
            "UnitPrice": [f"{p:.2f}".replace(".", ",") for p in price],
        },
        dtype=object,
    )
    # Exact duplicate rows (the same invoice exported twice), next to the original.
    dup = np.sort(rng.choice(m, dirt["exact_duplicate_rows"], replace=False))
    pos = np.concatenate([np.arange(m, dtype=float), dup + 0.5])
    idx = np.concatenate([np.arange(m), dup])
    return frame.iloc[idx[np.argsort(pos, kind="stable")]].reset_index(drop=True)


# ---------------------------------------------------------------------- public
def demo_frames(seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables as text frames (headers as written), before writing."""
    rng = np.random.default_rng(seed)
    customers, truth = _customers(rng)
    orders = _orders(rng, truth)
    return customers, orders


def write_demo_data(out_dir: Path, seed: int = 7) -> tuple[Path, Path]:
    """Write ``customers.csv`` and ``orders.csv`` under ``out_dir``; return their paths.

    ``customers.csv``: comma-separated, UTF-8 with BOM, CRLF line ends, about 5,065 rows
    (5,000 customers plus planted duplicates). ``orders.csv``: semicolon-separated,
    UTF-8, day-first ``dd.mm.yyyy hh:mm`` dates, decimal commas, about 30,000 invoices
    of 2,000 customers from 2025-05-01 to 2026-10-31. Same seed, same bytes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    customers, orders = demo_frames(seed)
    customers_path = out_dir / CUSTOMERS_FILE
    orders_path = out_dir / ORDERS_FILE
    with customers_path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(customers.columns)
        writer.writerows(customers.itertuples(index=False, name=None))
    with orders_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=";", lineterminator="\n")
        writer.writerow(orders.columns)
        writer.writerows(orders.itertuples(index=False, name=None))
    return customers_path, orders_path


# ---------------------------------------------------------------------- campaign
CAMPAIGN_FILE = "campaign.csv"
CAMPAIGN_HEADERS = [
    "Customer ID", "Campaign", "Group", "Sent At", "Opened", "Clicked", "Converted", "Revenue",
]  # fmt: skip
CAMPAIGN_BASE_RATE = 0.08  # conversion without the campaign, in every segment
CAMPAIGN_UPLIFT = 0.10  # conversion added among the treated of the uplift segments
CAMPAIGN_ORDER_VALUE = 40.0  # mean revenue of a conversion


def demo_campaign(
    customer_ids: Sequence[str] | pd.Series,
    segment_ids: Sequence[int] | pd.Series,
    *,
    sent: dt.datetime,
    seed: int = 7,
    uplift_segments: Sequence[int] | None = None,
    uplift: float = CAMPAIGN_UPLIFT,
    name: str = "autumn-mailing",
) -> tuple[pd.DataFrame, list[int]]:
    """Campaign results for customers of known segments, with a known effect.

    Every customer is drawn into treatment or control (half each; control written as
    ``Holdout``). Control customers, and treated customers outside ``uplift_segments``,
    convert at :data:`CAMPAIGN_BASE_RATE`; treated customers of ``uplift_segments``
    (default: the two largest segments, the lower id first on a tie) at
    ``CAMPAIGN_BASE_RATE + uplift``. A
    conversion brings lognormal revenue of mean :data:`CAMPAIGN_ORDER_VALUE`; no
    conversion leaves the revenue blank. Returns the text frame and the uplift segments.
    """
    rng = np.random.default_rng(seed)
    segs = np.asarray(segment_ids, dtype=int)
    if uplift_segments is None:
        ids, counts = np.unique(segs, return_counts=True)  # ids ascending
        uplift_segments = ids[np.argsort(-counts, kind="stable")[:2]].tolist()
    chosen = sorted(int(s) for s in uplift_segments)
    n = len(segs)
    treated = rng.random(n) < 0.5
    rate = np.where(
        treated & np.isin(segs, chosen), CAMPAIGN_BASE_RATE + uplift, CAMPAIGN_BASE_RATE
    )
    converted = rng.random(n) < rate
    opened = treated & ((rng.random(n) < 0.4) | converted)
    clicked = opened & ((rng.random(n) < 0.3) | converted)
    revenue = CAMPAIGN_ORDER_VALUE * rng.lognormal(-0.125, 0.5, n)
    yes_no = np.array(["no", "yes"], dtype=object)
    frame = pd.DataFrame(
        {
            "Customer ID": np.asarray(customer_ids, dtype=object),
            "Campaign": name,
            "Group": np.where(treated, "Treatment", "Holdout"),
            "Sent At": sent.strftime("%Y-%m-%d %H:%M:%S"),
            "Opened": yes_no[opened.astype(int)],
            "Clicked": yes_no[clicked.astype(int)],
            "Converted": yes_no[converted.astype(int)],
            "Revenue": np.where(converted, np.char.mod("%.2f", revenue), ""),
        },
        columns=CAMPAIGN_HEADERS,
    )
    return frame, chosen


def write_demo_campaign(path: Path, frame: pd.DataFrame) -> Path:
    """Write a :func:`demo_campaign` frame as a comma-separated UTF-8 file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
    return path
