"""Artifact: dump/load round trip, refusal before unpickling (signature, path, hash,
libraries), gates, cache."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from custseg.features.build import CategoryCodes, build_features, conform
from custseg.ingest.contracts.model import ColumnSpec, ColumnType, Contract, Role
from custseg.model.artifact import (
    ArtifactError,
    ModelCache,
    SegmentModel,
    UnsignedArtifactError,
    check_gates,
    check_libraries,
    dump_artifact,
    limit_blas_threads,
    load_artifact,
)
from custseg.model.signing import SIGNATURE_FIELD, signed_digest
from custseg.model.training import train_model
from signing_keys import TestKey

DATA = Path(__file__).resolve().parents[2] / "fixtures"  # copies of the shared real files
T = ColumnType
KEY = TestKey()  # the trusted model-signing key of these tests


def dump(model: SegmentModel) -> tuple[bytes, bytes]:
    """The artifact's files, signed with the trusted key."""
    return dump_artifact(model, KEY)


def signed(meta: dict[str, Any], key: TestKey = KEY) -> bytes:
    """``meta`` as a metadata file, signed (again) by ``key``."""
    meta = {k: v for k, v in meta.items() if k != SIGNATURE_FIELD}
    meta[SIGNATURE_FIELD] = key.sign(signed_digest(meta)).to_dict()
    return json.dumps(meta).encode()


def load(
    model_bytes: bytes,
    meta_bytes: bytes | None,
    *,
    model_name: str | None = None,
    version: str | None = None,
) -> SegmentModel:
    """Load as from ``models/<model_name>/<version>/`` (by default the model and version
    the metadata names)."""
    try:
        named = json.loads(meta_bytes or b"{}")
    except json.JSONDecodeError:  # the loader's to refuse
        named = {}
    return load_artifact(
        model_bytes,
        meta_bytes,
        verifier=KEY,
        model_name=model_name or str(named.get("model_name")),
        version=version or str(named.get("version")),
    )


@pytest.fixture(scope="module")
def income_contract(customer_contract: Callable[..., Contract]) -> Contract:
    return customer_contract(["income", "spending_score"])


@pytest.fixture(scope="module")
def trained(income_contract: Contract) -> tuple[SegmentModel, pd.DataFrame]:
    rng = np.random.default_rng(3)
    centres = [(20, 20), (20, 80), (80, 50)]
    df = pd.DataFrame(
        [(c[0] + rng.normal(0, 4), c[1] + rng.normal(0, 4)) for c in centres for _ in range(40)],
        columns=["income", "spending_score"],
    )
    df.insert(0, "customer_id", pd.array([f"{i:03d}" for i in range(len(df))], dtype="string"))
    df["gender"] = pd.array(rng.choice(["female", "male"], len(df)), dtype="string")
    f = build_features(df, income_contract, as_of=dt.date(2024, 1, 1))
    model = train_model(f, contract=income_contract, k_range=(2, 4), seed=1)
    return model, df


def test_round_trip_and_metadata(
    trained: tuple[SegmentModel, pd.DataFrame], income_contract: Contract
) -> None:
    model, df = trained
    model_bytes, meta_bytes = dump(model)
    meta = json.loads(meta_bytes)
    assert meta["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    for key in (
        "model_name", "version", "created_at", "sha256", "libraries", "contract_kind",
        "feature_schema", "training", "k", "k_evidence", "k_rule", "label_edges", "segments",
        "quality", "gates", "status",
    ):  # fmt: skip
        assert key in meta, key
    assert set(meta["libraries"]) >= {"python", "sklearn", "numpy", "pandas", "joblib"}
    assert meta["feature_schema"]["numeric"] == ["income", "spending_score"]
    assert meta["feature_schema"]["categorical"] == ["gender"]
    training = meta["training"]
    assert training["rows"] == 120 and training["as_of"] == "2024-01-01"
    assert training["moments"]["income"]["count"] == 120
    assert len(training["baseline_histograms"]["income"]["counts"]) == 10
    assert abs(sum(training["category_shares"]["gender"].values()) - 1) < 1e-9
    assert abs(sum(training["segment_shares"].values()) - 1) < 1e-9
    assert training["mean_distance"] > 0
    seg = meta["segments"][0]
    assert {"id", "name", "description", "action", "share", "value_share", "traits"} <= set(seg)

    loaded = load(model_bytes, meta_bytes)
    assert loaded.version == model.version and loaded.k == model.k
    assert loaded.schema.numeric == ["income", "spending_score"]
    assert loaded.label_edges.value_edges == model.label_edges.value_edges
    f = build_features(df, income_contract, schema=loaded.schema)
    a, b = model.predict(f), loaded.predict(f)
    pd.testing.assert_frame_equal(a, b)
    assert b["segment_name"].isin(list(loaded.segment_names().values())).all()
    d = loaded.distances(f.frame)
    assert d.shape == (120, loaded.k)
    assert np.allclose(d.min(axis=1), b["distance"])
    assert loaded.transform(f.frame).shape[0] == 120


def test_refuses_tampered_model(trained: tuple[SegmentModel, pd.DataFrame]) -> None:
    model_bytes, meta_bytes = dump(trained[0])
    tampered = bytearray(model_bytes)
    tampered[len(tampered) // 2] ^= 0xFF
    with pytest.raises(ArtifactError, match="SHA-256"):
        load(bytes(tampered), meta_bytes)


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every way of unpickling a model record itself and fail; returns the record."""
    import pickle

    calls: list[str] = []

    def forbidden(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} was called for a model that must be refused")

        return call

    for module, name in ((joblib, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(module, name, forbidden(f"{module.__name__}.{name}"))
    monkeypatch.setattr(joblib.numpy_pickle, "load", forbidden("joblib.numpy_pickle.load"))
    return calls


def _swap_model_file(
    trained: tuple[SegmentModel, pd.DataFrame],
) -> tuple[bytes, dict[str, Any]]:
    """A changed model file and the genuine metadata with the changed file's SHA-256
    (what someone who can write the bucket but not sign would put there)."""
    model_bytes, meta_bytes = dump(trained[0])
    other = bytearray(model_bytes)
    other[len(other) // 2] ^= 0xFF
    meta = json.loads(meta_bytes)
    meta["sha256"] = hashlib.sha256(bytes(other)).hexdigest()
    return bytes(other), meta


def test_refuses_a_model_file_with_a_recomputed_hash_but_no_signature(
    trained: tuple[SegmentModel, pd.DataFrame], no_unpickling: list[str]
) -> None:
    model_bytes, meta = _swap_model_file(trained)
    unsigned = {k: v for k, v in meta.items() if k != SIGNATURE_FIELD}
    with pytest.raises(UnsignedArtifactError, match="is not signed"):
        load(model_bytes, json.dumps(unsigned).encode())
    with pytest.raises(UnsignedArtifactError, match="not valid for the model-signing key"):
        load(model_bytes, json.dumps(meta).encode())  # the old signature: now wrong
    meta[SIGNATURE_FIELD]["value"] = "not base64!"
    with pytest.raises(UnsignedArtifactError, match="not base64"):
        load(model_bytes, json.dumps(meta).encode())
    assert no_unpickling == []


def test_refuses_an_artifact_signed_by_another_key(
    trained: tuple[SegmentModel, pd.DataFrame], no_unpickling: list[str]
) -> None:
    model_bytes, meta = _swap_model_file(trained)
    forger = TestKey(secret=b"someone else", key_id="forger-key")
    with pytest.raises(UnsignedArtifactError, match=r"by key forger-key\) is not valid"):
        load(model_bytes, signed(meta, forger))
    # any signed field changed afterwards breaks the signature too
    model_bytes, meta_bytes = dump(trained[0])
    meta = json.loads(meta_bytes)
    meta["gates"]["passed"] = not meta["gates"]["passed"]
    with pytest.raises(UnsignedArtifactError, match="changed or signed by another key"):
        load(model_bytes, json.dumps(meta).encode())
    assert no_unpickling == []


def test_refuses_metadata_read_from_another_version_or_model(
    trained: tuple[SegmentModel, pd.DataFrame], no_unpickling: list[str]
) -> None:
    model_bytes, meta_bytes = dump(trained[0])  # genuine and signed, in the wrong place
    meta = json.loads(meta_bytes)
    with pytest.raises(ArtifactError, match=r"says version '.*': an artifact copied"):
        load(model_bytes, meta_bytes, version="v20990101T000000Z-00000000")
    with pytest.raises(ArtifactError, match="says model_name"):
        load(model_bytes, meta_bytes, model_name="another")
    meta["version"] = "v20990101T000000Z-00000000"  # moved with its metadata edited to match
    with pytest.raises(UnsignedArtifactError):
        load(model_bytes, json.dumps(meta).encode())
    assert no_unpickling == []


def test_a_signed_artifact_is_verified_once_and_loads(
    trained: tuple[SegmentModel, pd.DataFrame],
) -> None:
    model_bytes, meta_bytes = dump(trained[0])
    meta = json.loads(meta_bytes)
    assert meta[SIGNATURE_FIELD]["key_id"] == "test-key"
    assert trained[0].metadata[SIGNATURE_FIELD] == meta[SIGNATURE_FIELD]
    before = KEY.verified
    assert load(model_bytes, meta_bytes).k == trained[0].k
    assert KEY.verified == before + 1
    # unsigned (custseg train's local files) is refused
    with pytest.raises(UnsignedArtifactError, match="is not signed"):
        load(*dump_artifact(trained[0]))


def test_refuses_other_library_versions(trained: tuple[SegmentModel, pd.DataFrame]) -> None:
    model_bytes, meta_bytes = dump(trained[0])
    meta = json.loads(meta_bytes)
    meta["libraries"]["sklearn"] = "0.24.2"  # signed: trained elsewhere, not tampered
    with pytest.raises(ArtifactError, match=r"sklearn 0\.24\.2"):
        load(model_bytes, signed(meta))
    meta = json.loads(meta_bytes)
    meta["libraries"]["numpy"] = "1.26.4"
    with pytest.raises(ArtifactError, match="numpy"):
        load(model_bytes, signed(meta))
    # patch-level and python differences are fine
    assert check_libraries({"sklearn": "1.9.99", "numpy": "2.0.0"}, {
        "sklearn": "1.9.1", "numpy": "2.4.6"}) == []  # fmt: skip


def test_refuses_missing_or_broken_metadata(trained: tuple[SegmentModel, pd.DataFrame]) -> None:
    model_bytes, _ = dump(trained[0])
    with pytest.raises(ArtifactError, match="missing"):
        load(model_bytes, None)
    with pytest.raises(ArtifactError, match="JSON"):
        load(model_bytes, b"{not json")
    with pytest.raises(ArtifactError, match="sha256"):
        load(model_bytes, json.dumps({"model_name": "m", "version": "v1"}).encode())


def test_gates_both_ways(trained: tuple[SegmentModel, pd.DataFrame]) -> None:
    meta = trained[0].metadata
    assert check_gates(meta) == (True, [])
    assert meta["status"] == "champion-eligible"
    bad = json.loads(json.dumps(meta))
    bad["quality"]["silhouette"] = 0.1
    bad["quality"]["min_share"] = 0.01
    bad["training"]["moments"]["income"]["count"] = 0
    ok, reasons = check_gates(bad)
    assert not ok and len(reasons) == 3
    assert any("silhouette" in r for r in reasons) and any("income" in r for r in reasons)
    assert check_gates(meta, silhouette_floor=0.99)[0] is False
    assert check_gates(bad, silhouette_floor=0.05, min_share=0.005)[1] == [reasons[2]]


def test_cache_by_version(trained: tuple[SegmentModel, pd.DataFrame]) -> None:
    model_bytes, meta_bytes = dump(trained[0])
    cache = ModelCache(max_items=1)
    calls = []

    def fetch() -> tuple[bytes, bytes | None]:
        calls.append(1)
        return model_bytes, meta_bytes

    name = trained[0].metadata["model_name"]
    first = cache.get_or_load(name, trained[0].version, fetch, KEY)
    second = cache.get_or_load(name, trained[0].version, fetch, KEY)
    assert first is second and len(calls) == 1
    with pytest.raises(ArtifactError, match="copied"):
        cache.get_or_load(name, "v-other", fetch, KEY)
    assert len(cache) == 1


def test_telco_real_file_round_trip() -> None:
    raw = pd.read_csv(DATA / "telco_customer_churn.csv", dtype=str)
    cols = {
        "customerID": "customer_id",
        "Contract": "contract",
        "InternetService": "internet_service",
        "PaymentMethod": "payment_method",
        "tenure": "tenure",
        "MonthlyCharges": "monthly_charges",
        "TotalCharges": "total_charges",
        "SeniorCitizen": "senior_citizen",
        "Churn": "churn",
    }
    df = raw.rename(columns=cols)[list(cols.values())].copy()
    for c in ("tenure", "monthly_charges", "total_charges"):
        df[c] = pd.to_numeric(df[c].str.strip(), errors="coerce")
    df["senior_citizen"] = df["senior_citizen"] == "1"
    df["churn"] = df["churn"] == "Yes"
    for c in ("contract", "internet_service", "payment_method"):
        df[c] = df[c].str.lower()
    telco = Contract(
        kind="customers",
        grain="customer",
        columns=[
            ColumnSpec(name="customer_id", type=T.ID, role=Role.CUSTOMER_ID),
            ColumnSpec(name="senior_citizen", type=T.BOOLEAN, role=Role.CATEGORY),
            *[
                ColumnSpec(name=c, type=T.CATEGORY, role=Role.CATEGORY)
                for c in ("contract", "internet_service", "payment_method")
            ],
            *[
                ColumnSpec(name=c, type=T.FLOAT, role=Role.NUMERIC)
                for c in ("tenure", "monthly_charges", "total_charges")
            ],
            ColumnSpec(name="churn", type=T.BOOLEAN, role=Role.OUTCOME),
        ],
        value_columns=["total_charges"],
    )
    f = build_features(df, telco, as_of=dt.date(2024, 1, 1))
    assert "churn" not in f.frame.columns and "churn" in f.extras.columns
    model = train_model(f, contract=telco, k_range=(2, 4))
    names = list(model.segment_names().values())
    assert len(set(names)) == model.k >= 2
    assert model.metadata["labels_unavailable"]["rfm"]
    loaded = load(*dump(model))
    scoring = build_features(df, telco, schema=loaded.schema)
    assert loaded._fast_plan() is not None  # log-scaled, plain, 0/1 and one-hot blocks
    expected = np.asarray(loaded.pipeline[:-1].transform(scoring.frame), dtype="float64")
    assert np.array_equal(loaded.transform(scoring.frame), expected)
    pred = loaded.predict(scoring)
    assert len(pred) == 7043 and pred["segment_id"].between(0, model.k - 1).all()
    churn_rates = [s["outcomes"]["churn"]["segment_rate"] for s in model.metadata["segments"]]
    assert max(churn_rates) - min(churn_rates) > 0.1  # segments separate churners


# -- the fast transform is scikit-learn's, bit for bit -----------------------------------


def _sklearn_x(model: SegmentModel, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.pipeline[:-1].transform(conform(frame, model.schema)), dtype="float64")


def _scoring_frame(df: pd.DataFrame, model: SegmentModel, contract: Contract) -> pd.DataFrame:
    messy = df.copy()
    messy.loc[::7, "income"] = np.nan  # imputed
    messy["gender"] = messy["gender"].astype(object)
    messy.loc[::5, "gender"] = None  # (missing): unseen in training
    messy.loc[3::11, "gender"] = "Other"  # unknown: all zeros
    return build_features(messy, contract, as_of=dt.date(2024, 1, 1), schema=model.schema).frame


def test_fast_transform_equals_sklearn(
    trained: tuple[SegmentModel, pd.DataFrame], income_contract: Contract
) -> None:
    model, df = trained
    assert model._fast_plan() is not None  # the training module's pipeline is recognised
    frame = _scoring_frame(df, model, income_contract)
    expected = _sklearn_x(model, frame)
    got = model.transform(frame)
    assert got.flags.c_contiguous and got.dtype == np.float64
    assert np.array_equal(got, expected)  # bit for bit, not approximately
    codes = {c: CategoryCodes.from_values(frame[c]) for c in model.schema.categorical}
    assert np.array_equal(model.transform(frame, codes), expected)
    assert np.array_equal(model.transform(frame.iloc[:1]), expected[:1])


def test_fast_assign_equals_a_full_sort(
    trained: tuple[SegmentModel, pd.DataFrame], income_contract: Contract
) -> None:
    model, df = trained
    frame = _scoring_frame(df, model, income_contract)
    features = build_features(df, income_contract, as_of=dt.date(2024, 1, 1), schema=model.schema)
    features.frame = frame
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 5):  # distance matrices with ties, as the old argsort saw them
        d = np.round(rng.uniform(0, 2, size=(len(frame), k)), 1)
        d[::3, -1] = d[::3, 0]
        d[::4] = 0.0
        with_d = SegmentModel(model.pipeline, model.metadata)
        with_d.distances = lambda frame, codes=None, d=d: d  # type: ignore[method-assign]
        seg, d1, conf = with_d.assign(features)
        order = np.argsort(d, axis=1, kind="stable")
        rows = np.arange(len(d))
        ref_d1 = d[rows, order[:, 0]]
        ref_d2 = d[rows, order[:, 1]] if k > 1 else ref_d1
        with np.errstate(divide="ignore", invalid="ignore"):
            ref_conf = np.clip(np.where(ref_d2 > 0, 1.0 - ref_d1 / ref_d2, 0.0), 0.0, 1.0)
        assert np.array_equal(seg, order[:, 0]) and np.array_equal(d1, ref_d1)
        assert np.array_equal(conf, ref_conf)
    pred = model.predict(features)
    seg, d1, conf = model.assign(features)
    assert pred["segment_id"].tolist() == seg.tolist()
    assert np.array_equal(pred["distance"].to_numpy(), d1)


def test_unknown_pipeline_shapes_use_sklearn(
    trained: tuple[SegmentModel, pd.DataFrame], income_contract: Contract
) -> None:
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder

    model, df = trained
    frame = _scoring_frame(df, model, income_contract)
    train = build_features(df, income_contract, as_of=dt.date(2024, 1, 1)).frame
    shapes = [
        ColumnTransformer([("num", MinMaxScaler(), ["income", "spending_score"])]),
        ColumnTransformer(
            [
                ("num", FunctionTransformer(lambda x: x * 2.0), ["income", "spending_score"]),
                ("cat", OneHotEncoder(sparse_output=False, handle_unknown="ignore"), ["gender"]),
            ]
        ),
        ColumnTransformer(
            [("cat", OneHotEncoder(sparse_output=False, handle_unknown="ignore"), ["gender"])],
            remainder="passthrough",
        ),
    ]
    for pre in shapes:
        pipeline = Pipeline([("preprocess", pre), ("cluster", KMeans(2, n_init=1, random_state=0))])
        pipeline.fit(train)
        other = SegmentModel(pipeline, model.metadata)
        assert other._fast_plan() is None
        assert np.array_equal(other.transform(frame), _sklearn_x(other, frame), equal_nan=True)


def test_infinite_numbers_are_refused_like_sklearn(
    trained: tuple[SegmentModel, pd.DataFrame], income_contract: Contract
) -> None:
    model, df = trained
    frame = _scoring_frame(df, model, income_contract)
    frame.iloc[2, frame.columns.get_loc("income")] = np.inf
    with pytest.raises(ValueError):
        _sklearn_x(model, frame)
    with pytest.raises(ValueError):
        model.transform(frame)


def test_limit_blas_threads_limits_the_whole_process() -> None:
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    with controller.limit(limits=2, user_api="blas"):  # the original limits come back after
        assert limit_blas_threads(1)
        infos = ThreadpoolController().select(user_api="blas").info()
        assert infos and all(info["num_threads"] == 1 for info in infos)
