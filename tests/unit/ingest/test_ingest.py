"""ingest_file end to end on fixtures: accepted / rejected files, outputs, counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custseg.dataset.clean_data import clean_files, clean_parts, clean_schema, read_clean
from custseg.ingest.contracts import builtin_contract

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _clean(result) -> pd.DataFrame:
    assert result.clean_path is not None
    return read_clean(result.clean_path).to_pandas()


def _rejected(result) -> pd.DataFrame:
    assert result.rejected_rows_path is not None
    return pd.read_csv(result.rejected_rows_path, dtype=str, keep_default_na=False)


def test_bom_semicolon_crlf_keeps_leading_zeros(ingest) -> None:
    result = ingest("bom_semicolon_crlf.csv")
    assert result.status == "accepted"
    rep = result.report
    assert rep.format["encoding"] == "utf-8-sig" and rep.format["delimiter"] == "semicolon"
    clean = _clean(result)
    assert clean["customer_id"].tolist() == ["00042", "00043", "7"]
    assert clean["annual_income"].tolist() == [1234.5, 17.5, 15.0]
    assert clean["gender"].tolist() == ["female", "male", "female"]
    assert "email" not in clean.columns  # personal data never in the clean output
    assert clean["_row"].tolist() == [2, 3, 4]
    meta = clean_schema(result.clean_path).metadata
    assert meta[b"custseg.contract_kind"] == b"customers"
    # min/max statistics for numbers and flags only (text min/max prunes nothing)
    group = pq.ParquetFile(clean_files(result.clean_path)[0]).metadata.row_group(0)
    stats = {group.column(i).path_in_schema: group.column(i).statistics
             for i in range(group.num_columns)}  # fmt: skip
    assert stats["annual_income"].has_min_max and stats["_row"].max == 4
    assert stats["customer_id"] is None and stats["gender"] is None
    # row numbers delta-encoded; numbers with few values stored as a dictionary
    encodings = {group.column(i).path_in_schema: group.column(i).encodings
                 for i in range(group.num_columns)}  # fmt: skip
    assert "DELTA_BINARY_PACKED" in encodings["_row"]
    assert "RLE_DICTIONARY" in encodings["annual_income"]


def test_few_valued_numbers_are_told_by_their_first_rows() -> None:
    from custseg.ingest.pipeline import few_valued_numbers

    n = 10_000
    batch = pa.RecordBatch.from_pydict(
        {
            "age": pa.array(np.arange(n) % 90, pa.float64()),
            "income": pa.array(np.arange(n) * 1.5, pa.float64()),
            "_row": pa.array(np.arange(n), pa.int64()),
            "gender": pa.array(["f"] * n),
        }
    )
    assert few_valued_numbers(batch, ["age", "income", "_row", "gender", "absent"]) == ["age"]


def test_gzip_file(ingest) -> None:
    result = ingest("customers_gzip.csv")
    assert result.status == "accepted"
    assert result.report.format["compression"] == "gzip"
    clean = _clean(result)
    assert clean["customer_id"].tolist() == ["00042", "00043", "00044"]
    assert clean["age__missing"].tolist() == [False, False, True]
    assert result.report.imputations["age"] == {"count": 1, "method": "median", "value": 35.5}


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("empty.csv", "empty_file"),
        ("header_only.csv", "header_only"),
        ("single_column.csv", "no_delimiter"),
        ("duplicate_header.csv", "duplicate_header"),
    ],
)
def test_file_level_rejections(ingest, name: str, code: str) -> None:
    result = ingest(name)
    assert result.status == "rejected"
    assert result.clean_path is None
    rep = result.report
    assert rep.file_errors == [code]
    assert rep.errors[0]["code"] == code
    assert f"incoming/test/{name}" in rep.errors[0]["message"]
    data = json.loads(result.report_json_path.read_text())
    assert data["status"] == "rejected" and data["file_errors"] == [code]
    assert result.report_text_path.read_text().startswith("REJECTED incoming/test/")
    assert result.contract_path.exists()
    assert not (result.report_json_path.parent / "data.parquet").exists()
    assert not (result.report_json_path.parent / "data").exists()  # no clean part either


def test_quoted_newline(ingest) -> None:
    result = ingest("quoted_newline.csv")
    assert result.status == "accepted"
    clean = _clean(result)
    assert clean["_row"].tolist() == [2, 3, 4]
    assert clean["city"].tolist() == ["london", "leeds", "york"]
    assert {"name", "address"}.isdisjoint(clean.columns)


def test_duplicates_whole_file(ingest) -> None:
    result = ingest("duplicates.csv", chunk_rows=2)  # dedupe must cross chunks
    rep = result.report
    assert rep.duplicates == {"exact": 1, "by_id": 2}
    assert rep.rows_read == 6 and rep.rows_kept == 3 and rep.rows_rejected == 3
    assert rep.rows_duplicate == 3
    clean = _clean(result)
    assert clean["_row"].tolist() == [2, 5, 7]
    assert clean["customer_id"].tolist() == ["1", "3", "2"]
    assert clean["total_spend"].tolist() == [100.0, 155.0, 210.0]
    assert rep.customers == 3
    rejected = _rejected(result)
    assert sorted(rejected["row"].astype(int).tolist()) == [3, 4, 6]
    by_row = dict(zip(rejected["row"], rejected["reasons"], strict=True))
    assert by_row["4"] == "duplicate row"
    assert by_row["3"] == "duplicate customer id"
    assert rejected.columns.tolist()[:3] == ["row", "reasons", "customer_id"]


def test_bad_values_rejected_with_reasons_and_no_personal_values(ingest) -> None:
    result = ingest("bad_values.csv")
    rep = result.report
    assert result.status == "accepted"
    assert rep.rows_read == 6
    assert rep.rows_kept == 2  # rows 2 and 7 (F -> female, 1 -> yes, "1,200" -> 1200)
    rejected = _rejected(result)
    assert rejected["row"].tolist() == ["3", "4", "5", "6"]
    assert "age: not a number" in rejected.loc[0, "reasons"]
    assert rejected.loc[0, "email"] == "b@x.com"  # the restricted file keeps originals
    assert "churn: not a yes/no value" not in rep.rejected_by_reason  # outcomes never reject
    assert rep.repaired["churn"]["not a yes/no value, set missing"] == 1
    assert rep.rejected_by_reason["customer_id: required value missing"] == 1
    report_text = result.report_json_path.read_text() + result.report_text_path.read_text()
    assert "@x.com" not in report_text
    for err in rep.row_errors:
        assert "incoming/test/bad_values.csv: row" in err["message"]
    clean = _clean(result)
    assert clean["annual_income"].tolist() == [50.0, 1200.0]
    assert clean["churn"].tolist() == [True, True]


def test_ragged_rows_rejected(ingest) -> None:
    result = ingest("ragged.csv")
    rep = result.report
    assert rep.rows_read == 4 and rep.rows_kept == 2 and rep.rows_invalid == 2
    assert _rejected(result)["row"].tolist() == ["3", "4"]


def test_cp1252_warns(ingest) -> None:
    result = ingest("cp1252.csv")
    assert result.status == "accepted"
    assert any("cp1252" in w for w in result.report.warnings)
    assert _clean(result)["city"].tolist() == ["málaga", "köln"]


def test_dates(ingest) -> None:
    eu = _clean(ingest("dates_eu.csv"))
    assert eu["signup_date"].tolist() == [pd.Timestamp("2010-01-13"), pd.Timestamp("2010-12-01")]
    assert eu["last_purchase_date"].iloc[1] == pd.Timestamp("2011-12-25")
    assert str(eu["signup_date"].dtype) == "datetime64[ns]"
    amb = ingest("dates_ambiguous.csv")
    assert any("ambiguous" in w and "month-first" in w for w in amb.report.warnings)
    assert _clean(amb)["signup_date"].iloc[0] == pd.Timestamp("2010-01-02")
    compact = _clean(ingest("dates_compact.csv"))
    assert compact["signup_date"].iloc[0] == pd.Timestamp("2010-01-13")


def test_transactions_small(ingest) -> None:
    result = ingest("transactions_small.csv")
    rep = result.report
    assert result.contract.kind == "transactions"
    assert rep.format["delimiter"] == "tab"
    tx = rep.transactions
    assert tx is not None
    assert tx["cancellations"] == 1 and tx["returns_netted"] == 1
    assert tx["non_positive_price_excluded"] == 1
    assert tx["non_positive_quantity_excluded"] == 1
    assert rep.rows_kept == 3 and rep.rows_invalid == 1 and rep.rows_excluded == 2
    clean = _clean(result)
    assert clean["amount"].tolist() == [10.0, -5.0, 5.0]
    assert clean["is_return"].tolist() == [False, True, False]
    assert clean["customer_id"].tolist() == ["00042", "00042", "00044"]
    assert clean["product_id"].tolist() == ["85123A", "85123A", "22423"]
    assert str(clean["event_time"].dtype) == "datetime64[ns]"
    assert rep.customers == 2
    assert clean_schema(result.clean_path).metadata[b"custseg.contract_kind"] == b"transactions"


def test_given_contract_is_used(ingest) -> None:
    result = ingest("mall_customers.csv", contract=builtin_contract("customers"))
    assert result.report.contract_reason == "given by the caller; other columns inferred"


def test_rerun_is_idempotent(ingest, tmp_path: Path) -> None:
    first = ingest("duplicates.csv")
    second = ingest("duplicates.csv")
    assert first.clean_path == second.clean_path
    assert len(_rejected(second)) == 3  # not appended twice


# ---- the three real files ------------------------------------------------------------


def test_mall(ingest) -> None:
    result = ingest("mall_customers.csv")
    rep = result.report
    assert result.status == "accepted"
    assert rep.rows_read == 200 and rep.rows_kept == 200 and rep.rows_rejected == 0
    assert rep.customers == 200
    clean = _clean(result)
    assert set(clean["gender"]) == {"male", "female"}
    assert {"customer_id", "age", "annual_income", "spending_score", "_row"} <= set(clean.columns)


def test_telco(ingest, fixtures: Path) -> None:
    raw = pd.read_csv(fixtures / "telco_customer_churn.csv", dtype=str, keep_default_na=False)
    blanks = int((raw["TotalCharges"].str.strip() == "").sum())
    assert blanks == 11
    result = ingest("telco_customer_churn.csv")
    rep = result.report
    assert result.status == "accepted"
    assert rep.rows_read == 7043 and rep.rows_kept == 7043 and rep.rows_rejected == 0
    assert rep.imputations["total_charges"]["count"] == 11
    assert rep.imputations["total_charges"]["method"] == "median"
    assert rep.columns_ignored == []
    clean = _clean(result)
    assert clean["total_charges__missing"].sum() == 11
    assert clean["churn"].dtype == bool and clean["churn"].sum() == int(
        (raw["Churn"] == "Yes").sum()
    )
    assert clean["senior_citizen"].sum() == int((raw["SeniorCitizen"] == "1").sum())
    assert "no internet service" in set(clean["online_security"])
    assert "no phone service" in set(clean["multiple_lines"])
    assert clean["customer_id"].iloc[0] == "7590-VHVEG"


def test_online_retail(ingest, fixtures: Path) -> None:
    raw = pd.read_csv(fixtures / "online_retail_invoices.csv", dtype=str, keep_default_na=False)
    qty = pd.to_numeric(raw["Quantity"])
    price = pd.to_numeric(raw["UnitPrice"])
    cancels = int(raw["InvoiceNo"].str.startswith("C").sum())
    assert (cancels, int((qty <= 0).sum()), int((price <= 0).sum())) == (3837, 5173, 2104)
    assert (qty.max(), price.max()) == (80995, 38970)
    no_customer = int((raw["CustomerID"] == "(blank)").sum())
    assert no_customer == 3722

    result = ingest("online_retail_invoices.csv")
    rep = result.report
    assert result.status == "accepted"
    tx = rep.transactions
    assert tx is not None
    assert tx["cancellations"] == 3837
    assert tx["non_positive_quantity"] == 5173
    assert tx["non_positive_price"] == 2104
    assert rep.outliers["quantity"]["max"] == 80995
    assert rep.outliers["unit_price"]["max"] == 38970
    assert rep.outliers["quantity"]["count"] > 0
    assert rep.rows_read == 25943
    assert rep.rejected_by_reason["customer_id: required value missing"] == no_customer
    assert rep.rows_kept + rep.rows_rejected == 25943
    assert rep.date_formats["event_time"].startswith("US month-first")
    clean = _clean(result)
    assert len(clean) == rep.rows_kept
    assert clean["is_return"].sum() == tx["returns_netted"]
    assert (clean.loc[clean["is_return"], "amount"] <= 0).all()
    assert clean["event_time"].min() == pd.Timestamp("2010-12-01 08:26")
    assert clean["customer_id"].nunique() == rep.customers
    assert len(_rejected(result)) == rep.rows_rejected


@pytest.mark.parametrize(
    ("fixture", "chunk_rows", "parts"),
    [
        ("telco_customer_churn.csv", 1000, 2),  # 8 chunks: parts of 4 and 4
        ("telco_customer_churn.csv", 2500, 2),  # 3 chunks: parts of 2 and 1
        ("duplicates.csv", 2, 2),  # duplicates across chunks and parts
        ("mall_customers.csv", 100_000, 1),  # one chunk: one part
    ],
)
def test_clean_data_is_parts_of_consecutive_rows(
    ingest, tmp_path: Path, fixture: str, chunk_rows: int, parts: int
) -> None:
    """The clean data is written as CLEAN_PARTS Parquet files at once; read in name order
    they hold the same rows, in the same order, as one chunk gives."""
    whole = ingest(fixture, chunk_rows=1_000_000)
    assert [f.name for f in clean_files(whole.clean_path)] == ["part-00000.parquet"]
    copy = tmp_path / f"chunked-{fixture}"
    copy.write_bytes((FIXTURES / fixture).read_bytes())
    split = ingest(copy, chunk_rows=chunk_rows, source_name=whole.report.source)
    files = clean_files(split.clean_path)
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(parts)]
    counts = [rows for _, rows in clean_parts(split.clean_path)]
    assert all(counts) and sum(counts) == split.report.rows_kept == whole.report.rows_kept
    assert read_clean(split.clean_path).equals(read_clean(whole.clean_path), check_metadata=True)
    assert split.report.duplicates == whole.report.duplicates
    rows = read_clean(split.clean_path).column("_row").to_numpy()
    assert (rows[1:] > rows[:-1]).all()  # the upload's order


# ---- bounded memory whatever the file holds ---------------------------------------------


def test_flood_of_header_errors_keeps_the_first_20_and_counts_all(tmp_path: Path) -> None:
    from custseg.ingest.pipeline import ingest_file

    src = tmp_path / "dup.csv"
    src.write_text("customer_id," + ",".join(["age"] * 5000) + "\n" + "1," * 5000 + "1\n")
    result = ingest_file(src, tmp_path / "out", source_name="dup.csv", dataset="d", run_id="r")
    report = json.loads(result.report_json_path.read_text())
    assert report["status"] == "rejected"
    assert len(report["errors"]) == 20
    assert report["error_counts"] == {"duplicate_header": 4999}
    assert report["errors_omitted"] == 4979
    text = result.report_text_path.read_text()
    assert "and 4,979 more file-level errors not listed (all 4,999 by code: " in text


def _twice(path: Path, customers: int) -> None:
    """Every customer twice: the second copy exact for even ids, a year older for odd."""
    rows = [f"C{i:07d},{20 + i % 50},{i % 100}" for i in range(customers)]
    again = [f"C{i:07d},{20 + i % 50 + i % 2},{i % 100}" for i in range(customers)]
    path.write_text("customer_id,age,spending_score\n" + "\n".join(rows + again) + "\n")


@pytest.mark.parametrize("customers", [3_000, 12_000])
def test_duplicates_handled_one_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, customers: int
) -> None:
    """Raw text of duplicates is hashed and written per chunk, never all at once: the
    largest structure of row text is the same for 6,000 rows as for 24,000. (Up to
    64 MiB of it is kept from hashing to writing; 16 KiB here.)"""
    import custseg.ingest.pipeline as ingest_module

    monkeypatch.setattr(ingest_module, "_KEEP_RAW_BYTES", 16 << 10)

    biggest = {"hashed": 0, "written": 0}
    hash_rows, write_rows = ingest_module.row_hash, ingest_module._RejectedWriter.write

    def spy_hash(joined: pa.Array) -> np.ndarray:
        biggest["hashed"] = max(biggest["hashed"], len(joined))
        return hash_rows(joined)

    def spy_write(self, rows: np.ndarray, reasons: np.ndarray, raw: pd.DataFrame) -> None:
        biggest["written"] = max(biggest["written"], len(rows))
        write_rows(self, rows, reasons, raw)

    monkeypatch.setattr(ingest_module, "row_hash", spy_hash)
    monkeypatch.setattr(ingest_module._RejectedWriter, "write", spy_write)
    src = tmp_path / "twice.csv"
    _twice(src, customers)
    result = ingest_module.ingest_file(
        src, tmp_path / "out", source_name="t.csv", dataset="d", run_id="r", chunk_rows=1000
    )
    assert result.status == "accepted"
    assert result.report.rows_kept == customers
    assert result.report.duplicates == {"exact": customers // 2, "by_id": customers // 2}
    assert 0 < max(biggest.values()) <= 1000  # one chunk, whatever the file
    rejected = _rejected(result)
    assert len(rejected) == customers
    assert rejected["row"].astype(int).is_monotonic_increasing  # in file order
    kept = _clean(result)
    odd = kept[kept["customer_id"] == "C0000001"]
    assert odd["age"].tolist() == [22.0]  # the later row of a repeated id
    monkeypatch.undo()  # the candidates' text kept in memory: the same rejected rows
    whole = ingest_module.ingest_file(
        src, tmp_path / "whole", source_name="t.csv", dataset="d", run_id="r", chunk_rows=1000
    )
    assert _rejected(whole).equals(rejected)


def test_polish_cp1250_file_reads_lodz(tmp_path: Path) -> None:
    from custseg.ingest.pipeline import ingest_file

    text = "customer_id,city,age\nC1,Łódź,30\nC2,Kraków,41\nC3,Gdańsk,52\nC4,Wrocław,28\n"
    src = tmp_path / "pl.csv"
    src.write_bytes(text.encode("cp1250"))
    result = ingest_file(src, tmp_path / "out", source_name="pl.csv", dataset="d", run_id="r")
    assert result.status == "accepted"
    assert result.report.format["encoding"] == "cp1250"
    assert _clean(result)["city"].tolist() == ["łódź", "kraków", "gdańsk", "wrocław"]


def _orders(path: Path, lines: int) -> None:
    """An order log: ~20 lines a customer, 1 % of lines repeated exactly later in the
    file, 1 % with a blank customer id; many lines share date, quantity and price."""
    rng = np.random.default_rng(5)
    rows = [
        f"{500_000 + i // 4},2011-0{1 + i % 9}-1{i % 10} 10:00,"
        f"{'' if rng.random() < 0.01 else 10_000 + int(rng.integers(lines // 20))},"
        f"{int(rng.integers(1, 4))},{rng.choice([1.25, 2.5])},United Kingdom"
        for i in range(lines)
    ]
    rows += [rows[int(i)] for i in rng.integers(0, lines, lines // 100)]
    head = "InvoiceNo,InvoiceDate,CustomerID,Quantity,UnitPrice,Country\n"
    path.write_text(head + "\n".join(rows) + "\n")


@pytest.mark.parametrize("kind", ["orders", "customers"])
def test_dedupe_holds_one_partition_of_hashes_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Repeated keys and ids are found one partition of hashes at a time (spilled to
    files beside the stage): the largest array of hashes is a partition's, not the
    file's, and the outputs are those of a single in-memory partition."""
    import custseg.ingest.pipeline as ingest_module

    src = tmp_path / f"{kind}.csv"
    _orders(src, 20_000) if kind == "orders" else _twice(src, 10_000)

    def run(name: str) -> tuple[object, int]:
        largest = [0]
        find_repeated = ingest_module.repeated

        def spy(values: np.ndarray) -> np.ndarray:
            largest[0] = max(largest[0], len(values))
            return find_repeated(values)

        monkeypatch.setattr(ingest_module, "repeated", spy)
        result = ingest_module.ingest_file(
            src, tmp_path / name, source_name="o.csv", dataset="d", run_id="r", chunk_rows=3000
        )
        assert result.status == "accepted"
        return result, largest[0]

    whole, whole_largest = run("whole")  # 20,000 rows: one partition
    monkeypatch.setattr(ingest_module, "_PART_ROWS", 1000)
    parted, parted_largest = run("parted")
    assert whole_largest == whole.report.rows_read - whole.report.rows_invalid
    assert 0 < parted_largest <= 2 * 1000
    assert read_clean(parted.clean_path).equals(read_clean(whole.clean_path))
    assert _rejected(parted).equals(_rejected(whole))
    assert whole.contract.kind == ("transactions" if kind == "orders" else "customers")
    assert parted.report.duplicates == whole.report.duplicates
    assert parted.report.duplicates["exact" if kind == "orders" else "by_id"] > 0
    assert parted.report.customers == whole.report.customers
    assert parted.report.customers == _clean(parted)["customer_id"].nunique()  # blank: none
    assert sorted(p.name for p in (tmp_path / "parted").iterdir()) == [
        "contract.json", "contract.yaml", "data", "quality.json", "quality.txt",
        "rejected_rows.csv",
    ]  # fmt: skip


def test_distinct_ids_merge_as_they_grow() -> None:
    """The distinct customer ids of a transaction table are merged batch by batch; a
    missing id is no customer."""
    from custseg.ingest.pipeline import _DistinctIds

    distinct = _DistinctIds(merge_at=4)
    batches = [["a", "b", None], ["b", "c", "d", "e"], ["a", None, "f"], ["g"]]
    for values in batches:
        distinct.add(pa.array(values, pa.string()))
    assert distinct.count() == 7
    assert _DistinctIds().count() == 0


def _with_copies(path: Path, kind: str, rows: int) -> None:
    """A customer table or an order log with every 7th row copied exactly at the end,
    blanks to impute and outliers to clip."""
    rng = np.random.default_rng(11)
    if kind == "customers":
        header = "customer_id,age,annual_income,contract"
        plans = ["month-to-month", "one year", "two year", "month-to-month"]
        lines = [
            f"C{i:06d},{'' if i % 13 == 0 else 18 + i % 60},{rng.lognormal(10, 1.2):.2f},"
            f"{'' if i % 11 == 0 else plans[int(rng.integers(4))]}"
            for i in range(rows)
        ]
    else:
        header = "InvoiceNo,InvoiceDate,CustomerID,Quantity,UnitPrice,Country"
        lines = [
            f"{500000 + i // 3},2024-{1 + i % 12:02d}-{1 + i % 28:02d} 10:00:00,{1000 + i % 97},"
            f"{1 + int(rng.gamma(1.5, 4))},{rng.gamma(2, 3):.2f},{'' if i % 17 == 0 else 'UK'}"
            for i in range(rows)
        ]
    path.write_text("\n".join([header, *lines, *lines[::7]]) + "\n")


@pytest.mark.parametrize("reserve", [4096, 2])
@pytest.mark.parametrize("kind", ["customers", "orders"])
def test_statistics_less_the_exact_duplicates_equal_folding_the_kept_rows_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, reserve: int
) -> None:
    """Pass 1's statistics less the removed exact duplicates give the clean data and
    report that folding the kept rows again gives, with a sample smaller than the file
    (so which rows it holds decides the imputed values and the clipping bounds), and
    with a reserve too small for the duplicates it held (then they are folded again)."""
    import custseg.ingest.pipeline as ingest_module

    src = tmp_path / f"{kind}.csv"
    _with_copies(src, kind, 3_000)
    monkeypatch.setattr(ingest_module, "SAMPLE_K", 400)
    monkeypatch.setattr(ingest_module, "_SAMPLE_RESERVE", reserve)
    used: list[bool] = []
    less = ingest_module._without_duplicates

    def spy(staged, plan):  # type: ignore[no-untyped-def]
        out = less(staged, plan)
        used.append(out is not None)
        if out is not None:  # the same statistics as folding the kept rows again
            stats, _ = ingest_module._fold_kept(staged, plan)
            for name, st in stats.items():
                ours = out[0][name]
                assert ours.counts.counts == st.counts.counts and ours.missing == st.missing
                assert (ours.moments.n, ours.moments.min, ours.moments.max) == (
                    st.moments.n,
                    st.moments.min,
                    st.moments.max,
                )
                assert ours.moments.mean == pytest.approx(st.moments.mean, rel=1e-12)
        return out

    monkeypatch.setattr(ingest_module, "_without_duplicates", spy)
    args = {"source_name": "t.csv", "dataset": "d", "run_id": "r", "chunk_rows": 500}
    fast = ingest_module.ingest_file(src, tmp_path / "fast", **args)
    assert used == [reserve > 2]
    monkeypatch.setattr(ingest_module, "_without_duplicates", lambda staged, plan: None)
    again = ingest_module.ingest_file(src, tmp_path / "again", **args)
    assert fast.status == again.status == "accepted"
    assert fast.report.duplicates["exact"] > 300  # the copies of the valid rows
    assert read_clean(fast.clean_path).equals(read_clean(again.clean_path))
    report, other = fast.report.to_dict(), again.report.to_dict()
    for doc in (report, other):
        doc.pop("timings_ms"), doc.pop("date_bounds")
    assert report == other
    assert report["outliers"]  # bounds from the sample clipped values
    if kind == "customers":
        assert report["imputations"]  # and a median from it filled blanks


def test_a_range_removes_the_copies_of_other_ranges_rows_and_hashes_its_rows(
    tmp_path: Path,
) -> None:
    """A range of a fanned-out upload: the rows named as copies of earlier ranges' rows
    are removed as duplicate rows (their text in rejected_rows.csv), and each kept row
    gets a hash that its exact copies share."""
    from custseg.ingest.pipeline import RangeIngest, ingest_file

    header = "InvoiceNo,InvoiceDate,CustomerID,Quantity,UnitPrice,Country"
    lines = [
        f"{5000 + i},2024-03-{1 + i % 28:02d} 10:00:00,{100 + i % 9},2,3.5,UK" for i in range(40)
    ]
    lines += [lines[3], lines[7]]  # copies within the range (rows 2-41 are the lines)
    src = tmp_path / "range.csv"
    src.write_text("\n".join([header, *lines]) + "\n")
    ranged = RangeIngest(row_offset=1_000, duplicate_rows=np.array([1_011, 1_020]), hash_rows=True)
    result = ingest_file(
        src, tmp_path / "out", source_name="r.csv", dataset="d", run_id="r", ranged=ranged
    )
    rep = result.report
    assert rep.duplicates["exact"] == 4 and rep.rows_kept == 38
    assert rep.rejected_by_reason["duplicate row"] == 4
    rejected = _rejected(result)
    assert rejected["row"].astype(int).tolist() == [1_011, 1_020, 1_042, 1_043]
    assert rejected["InvoiceNo"].tolist() == ["5009", "5018", "5003", "5007"]
    assert 1_011 not in _clean(result)["_row"].tolist()
    hashes = ranged.hashes
    assert hashes is not None and hashes.num_rows == 38
    assert hashes.column("row").to_pylist() == _clean(result)["_row"].tolist()
    again = RangeIngest(row_offset=5_000, hash_rows=True)
    copy = tmp_path / "copy.csv"
    copy.write_text("\n".join([header, lines[3], lines[4]]) + "\n")
    ingest_file(  # every range is read with the upload's contract
        copy,
        tmp_path / "out2",
        source_name="c.csv",
        dataset="d",
        run_id="r",
        ranged=again,
        contract=result.contract,
    )
    assert again.hashes is not None
    rows, firsts, seconds = (hashes.column(c).to_pylist() for c in ("row", "h1", "h2"))
    pairs = {(h1, h2): row for row, h1, h2 in zip(rows, firsts, seconds, strict=True)}
    copies = zip(
        again.hashes.column("h1").to_pylist(), again.hashes.column("h2").to_pylist(), strict=True
    )
    assert [pairs.get(key) for key in copies] == [1_005, 1_006]  # the same text, the same hash
