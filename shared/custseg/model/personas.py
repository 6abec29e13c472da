"""Personas: a unique plain-language name, a description and an action per segment.

How a segment differs from the whole base is measured per feature by a standardised
difference ``d = (segment mean - base mean) / base std`` (on ``signed log1p`` for the
features the model log-scales, so one huge spender does not define a segment); for a
categorical value ``d = (p_segment - p_base) / sqrt(p_base (1 - p_base))`` and it must
also be the segment's majority value. Traits with ``|d| >= TRAIT_MIN_EFFECT`` are ranked
by ``|d|``; the name is up to two adjectives plus a noun taken from the vocabulary
(:data:`TRANSACTION_VOCAB`, :data:`PATTERN_VOCAB`), e.g. "Lapsed one-time buyers",
"High-income big spenders". A segment without a clear trait is "Mainstream customers".
Names are made unique deterministically: colliding segments (in id order) take their next
trait, then a "(segment N)" suffix.

Actions come from :mod:`custseg.model.actions`: each segment's position (value tier,
lifecycle, engagement, income, outcome rates and, when the model has propensities, the
risk and response indexes) scores every action, and the segments get
different actions, the clearest case first. Numbers in descriptions are written for people:
durations in days, months or years (:func:`human_value`), large numbers with separators.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from custseg.features.build import MISSING_CATEGORY, Features
from custseg.model.actions import (
    ACTIONS,
    assign_actions,
    best_action,
    propensity_index,
    signals_from,
)

__all__ = ["ACTIONS", "choose_action", "describe_segments", "human_value", "unique_names"]

TRAIT_MIN_EFFECT = 0.4
"""Minimum |standardised difference| for a trait to count."""


@dataclass(frozen=True)
class Word:
    text: str
    noun: bool = False


Vocab = tuple[Word | None, Word | None]  # (high, low)

TRANSACTION_VOCAB: dict[str, Vocab] = {
    "recency_days": (Word("lapsed"), Word("recent")),
    "frequency": (Word("frequent"), Word("one-time")),
    "monetary": (Word("big spenders", noun=True), Word("low spenders", noun=True)),
    "avg_order_value": (Word("big-basket"), Word("small-basket")),
    "tenure_days": (Word("long-standing"), Word("new")),
    "mean_interval_days": (Word("occasional"), Word("regular")),
    "return_share": (Word("return-prone"), None),
}
"""Words for the transaction features: (high, low)."""

TENURE_PATTERN = (
    r"tenure|days_since_(first|signup|join|enrol|dt_customer|customer|registration|created)"
)
RECENCY_PATTERN = r"recency|days_since_last"
SHARE_NOISE = re.compile(r"(^|_)(num|mnt|purchases|products|prods|month|share|amount|spend)(?=_|$)")

PATTERN_VOCAB: list[tuple[str, Vocab]] = [
    (r"income|salary|earning", (Word("high-income"), Word("low-income"))),
    (
        r"spend|spending|purchase_score",
        (Word("big spenders", noun=True), Word("cautious spenders", noun=True)),
    ),
    (r"senior", (Word("senior"), None)),
    (r"(^|_)age($|_)|years_old", (Word("older"), Word("young"))),
    (TENURE_PATTERN, (Word("long-tenure"), Word("new"))),
    (
        r"total_(charge|spend|revenue|amount)|lifetime|clv|ltv",
        (Word("high-lifetime-value"), Word("low-lifetime-value")),
    ),
    (r"monthly|charge|bill|price|fee|plan", (Word("high-bill"), Word("low-bill"))),
    (r"partner|married|spouse", (Word("partnered"), Word("single"))),
    (r"dependent|children|kids|household", (Word("family"), None)),
    (r"paperless", (Word("paperless"), Word("paper-billed"))),
    (r"recency|days_since_last", (Word("lapsed"), Word("recent"))),
    (r"frequency|orders|visits|purchases_total|purchases$", (Word("frequent"), Word("infrequent"))),
]
"""Words for customer-table features, by regular expression on the column name."""

FEATURE_LABELS = {
    "recency_days": "time since last purchase",
    "frequency": "orders",
    "monetary": "net spend",
    "avg_order_value": "average order value",
    "tenure_days": "time since first purchase",
    "mean_interval_days": "time between orders",
    "return_share": "share of spend returned",
}

# How a marketer says "higher" / "lower" for the transaction features.
TREND_WORDS = {
    "recency_days": ("last bought longer ago", "bought more recently"),
    "frequency": ("more orders", "fewer orders"),
    "monetary": ("higher net spend", "lower net spend"),
    "avg_order_value": ("bigger orders", "smaller orders"),
    "tenure_days": ("customers for longer", "newer customers"),
    "mean_interval_days": ("longer gaps between orders", "shorter gaps between orders"),
    "return_share": ("return more", "return less"),
}


def trend(feature: str, higher: bool) -> str:
    """``"bought more recently"`` for lower recency; ``"higher age"`` by default."""
    if feature in TREND_WORDS:
        return TREND_WORDS[feature][0 if higher else 1]
    if re.search(RECENCY_PATTERN, feature.lower()):
        return TREND_WORDS["recency_days"][0 if higher else 1]
    if re.search(TENURE_PATTERN, feature.lower()):
        return TREND_WORDS["tenure_days"][0 if higher else 1]
    return f"{'higher' if higher else 'lower'} {label(feature)}"


def display_value(value: object) -> str:
    """A category value as a marketer reads it: ``united kingdom`` -> ``United Kingdom``."""
    text = str(value)
    return text.title() if text.islower() and len(text) > 3 else text


_YES = {"yes", "true", "y", "1"}
_NO = {"no", "false", "n", "0"}


def label(feature: str) -> str:
    """A readable name of a feature column: ``days_since_signup_date`` -> ``time since
    signup date``, ``spend_total`` -> ``spend total``."""
    if feature in FEATURE_LABELS:
        return FEATURE_LABELS[feature]
    text = feature.replace("_", " ").strip()
    return "time since " + text[len("days since ") :] if text.startswith("days since ") else text


DURATION = re.compile(r"(^|_)days($|_)|^recency$|(^|_)recency_days$")
"""Features measured in days (shown as days, months or years)."""


def is_duration(feature: str) -> bool:
    return bool(DURATION.search(feature.lower()))


def human_value(feature: str, x: float) -> str:
    """A feature value as a person reads it: durations as ``12 days``, ``5 months`` or
    ``4.0 years``; other numbers with at most a few significant digits."""
    if not np.isfinite(x):
        return "n/a"
    if "year" in feature.lower() and 1000 <= abs(x) < 10000:
        return f"{x:.0f}"  # a year, not an amount
    if feature.lower().endswith("_share") and 0 <= x <= 1:
        return f"{x:.0%}"
    if not is_duration(feature):
        return _fmt(x)
    days = abs(x)
    sign = "-" if x < 0 else ""
    if days < 60:
        return f"{sign}{days:.0f} day{'' if round(days) == 1 else 's'}"
    if days < 730:
        return f"{sign}{days / 30.44:.0f} months"
    return f"{sign}{days / 365.25:.1f} years"


def _vocab(feature: str, binary: bool) -> Vocab:
    if feature in TRANSACTION_VOCAB:
        return TRANSACTION_VOCAB[feature]
    lowered = feature.lower()
    if lowered.endswith("_share"):  # a part of a group total: wines share -> wines-focused
        core = SHARE_NOISE.sub("", lowered).strip("_").replace("_", "-")
        return (Word(f"{core}-focused") if core else None), None
    for pattern, words in PATTERN_VOCAB:
        if re.search(pattern, lowered):
            return words
    text = label(feature).replace(" ", "-")
    if binary:
        return Word(text), Word(f"no-{text}")
    return Word(f"high-{text}"), Word(f"low-{text}")


def _category_word(feature: str, value: str) -> Word:
    v = value.strip().lower()
    if v in _YES:
        return Word(label(feature).replace(" ", "-"))
    if v in _NO:
        return Word("no-" + label(feature).replace(" ", "-"))
    return Word(v)


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.1f}".rstrip("0").rstrip(".")
    if a == 0:
        return "0"
    return f"{x:.2f}"


def _transform(values: pd.Series, logged: bool) -> np.ndarray:
    arr = values.to_numpy(dtype="float64", na_value=np.nan)
    return np.sign(arr) * np.log1p(np.abs(arr)) if logged else arr


def _base_stats(features: Features, log_features: set[str]) -> dict[str, dict[str, Any]]:
    """Per numeric feature, the whole-base arrays and statistics (computed once)."""
    stats: dict[str, dict[str, Any]] = {}
    for col in features.numeric:
        raw = features.frame[col].to_numpy(dtype="float64", na_value=np.nan)
        t = _transform(features.frame[col], col in log_features)
        ok_t, ok_raw = np.isfinite(t), np.isfinite(raw)
        base = t[ok_t]
        finite_raw = raw[ok_raw]
        stats[col] = {
            "raw": raw,
            "t": t,
            "ok_t": ok_t,
            "ok_raw": ok_raw,
            "n": int(base.size),
            "mean": float(base.mean()) if base.size else np.nan,
            "std": float(base.std()) if base.size else 0.0,
            "raw_mean": float(finite_raw.mean()) if finite_raw.size else np.nan,
            "raw_median": float(np.median(finite_raw)) if finite_raw.size else np.nan,
            "binary": bool(finite_raw.size) and bool(np.isin(finite_raw, (0.0, 1.0)).all()),
        }
    return stats


def _traits(
    features: Features, mask: np.ndarray, base_stats: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    frame = features.frame
    traits: list[dict[str, Any]] = []
    for col in features.numeric:
        st = base_stats[col]
        seg = st["t"][mask & st["ok_t"]]
        if st["n"] < 2 or seg.size == 0 or st["std"] <= 0:
            continue
        d = (float(seg.mean()) - st["mean"]) / st["std"]
        seg_raw = st["raw"][mask & st["ok_raw"]]
        binary = st["binary"]
        high, low = _vocab(col, binary)
        word = high if d > 0 else low
        if col == "frequency" and d < 0 and float(np.median(seg_raw)) > 1:
            word = Word("infrequent")
        traits.append(
            {
                "feature": col,
                "kind": "binary" if binary else "numeric",
                "direction": "high" if d > 0 else "low",
                "effect": round(d, 3),
                "segment_mean": float(seg_raw.mean()),
                "base_mean": st["raw_mean"],
                "segment_median": float(np.median(seg_raw)),
                "base_median": st["raw_median"],
                "word": None if word is None else word.text,
                "_word": word,
            }
        )
    for col in features.categorical:
        values = frame[col].astype("string").fillna(MISSING_CATEGORY)
        base_share = values.value_counts(normalize=True)
        seg_share = values[mask].value_counts(normalize=True)
        best: dict[str, Any] | None = None
        for value, p_seg in seg_share.items():
            p_base = float(base_share.get(value, 0.0))
            if value == MISSING_CATEGORY or p_seg < 0.5 or p_base <= 0 or p_base >= 1:
                continue
            d = (float(p_seg) - p_base) / float(np.sqrt(p_base * (1 - p_base)))
            if best is None or d > best["effect"]:
                word = _category_word(col, str(value))
                best = {
                    "feature": col,
                    "kind": "categorical",
                    "direction": str(value),
                    "effect": round(d, 3),
                    "segment_share": float(p_seg),
                    "base_share": p_base,
                    "word": word.text,
                    "_word": word,
                }
        if best is not None:
            traits.append(best)
    traits.sort(key=lambda t: (-abs(t["effect"]), t["feature"]))
    return traits


def _name(words: list[Word], default_noun: str) -> str:
    adjectives = [w.text for w in words if not w.noun]
    nouns = [w.text for w in words if w.noun]
    text = " ".join([*adjectives, nouns[0] if nouns else default_noun])
    return text[:1].upper() + text[1:]


def _overlaps(a: str, b: str) -> bool:
    """Whether two words say the same (one contains the other, ignoring hyphens)."""
    a, b = a.replace("-", " "), b.replace("-", " ")
    return a in b or b in a


def _pick_words(traits: list[dict[str, Any]], n: int) -> list[Word]:
    """Up to ``n`` adjectives and at most one noun from the strongest traits."""
    adjectives: list[Word] = []
    noun: Word | None = None
    considered = 0
    for trait in traits:
        word = trait["_word"]
        if word is None or abs(trait["effect"]) < TRAIT_MIN_EFFECT:
            continue
        considered += 1
        if word.noun:
            if noun is None and considered <= n + 1:
                noun = word
        elif len(adjectives) < n and not any(_overlaps(w.text, word.text) for w in adjectives):
            adjectives.append(word)
        if len(adjectives) >= n and (noun is not None or considered > n):
            break
    return [*adjectives, noun] if noun is not None else adjectives


def choose_action(
    traits: list[dict[str, Any]],
    value_index: float | None,
    outcomes: dict[str, dict[str, float]] | None = None,
    *,
    risk_index: float | None = None,
    response_index: float | None = None,
) -> str:
    """The best-fitting action for one segment on its own (:mod:`custseg.model.actions`)."""
    signals = signals_from(
        traits, value_index, outcomes, risk_index=risk_index, response_index=response_index
    )
    return best_action(signals).action


def _phrase(trait: dict[str, Any]) -> str:
    d = float(trait["effect"])
    if trait["kind"] == "categorical":
        return (
            f"{trait['segment_share']:.0%} have {label(trait['feature'])} "
            f"{display_value(trait['direction'])} (vs {trait['base_share']:.0%} overall)"
        )
    if trait["kind"] == "binary":
        return (
            f"{trait['segment_mean']:.0%} {label(trait['feature'])} (vs {trait['base_mean']:.0%})"
        )
    way = trend(trait["feature"], d > 0)
    comparative = way.split()[0] in {"higher", "lower", "more", "fewer", "bigger", "smaller"}
    size = "much " if abs(d) >= 1.0 and comparative else ""
    if trait["feature"] == "return_share":
        seg, base = f"{trait['segment_mean']:.0%}", f"{trait['base_mean']:.0%}"
        return f"{size}{way} (average {seg} vs {base})"
    feature = trait["feature"]
    return (
        f"{size}{way} ({label(feature)}: median {human_value(feature, trait['segment_median'])} "
        f"vs {human_value(feature, trait['base_median'])})"
    )


def describe_segments(
    features: Features,
    labels: np.ndarray,
    k: int,
    *,
    log_features: list[str] | None = None,
    outcome_columns: list[str] | None = None,
    predictions: Mapping[str, tuple[str, np.ndarray]] | None = None,
) -> list[dict[str, Any]]:
    """One persona per segment id 0..k-1.

    ``outcome_columns``: the extras columns that are outcomes (the contract's outcome roles);
    None: every 0/1 extras column counts as one.

    ``predictions``: per propensity column (e.g. ``p_churn``) its use (``risk``,
    ``response`` or ``other``) and the probability per row; each segment then carries
    ``predicted`` (column -> segment and base mean, index) and the actions use them.

    ``labels``: segment id per row of ``features.frame``. Returns dicts with ``id``,
    ``name`` (unique), ``description``, ``action``, ``action_detail``, ``size``, ``share``,
    ``value_share`` (None without a value measure), ``value_index``, ``traits`` (strongest
    first: feature, kind, direction, effect, segment/base mean and median or shares, word),
    ``typical`` (median per numeric feature), ``top_categories`` (feature -> [value, share]),
    ``outcomes`` (outcome rate per outcome column of ``extras``) and ``attributes`` (top
    value of each attribute column).
    """
    labels = np.asarray(labels)
    n = len(labels)
    logged = set(log_features or [])
    default_noun = "buyers" if features.kind == "transactions" else "customers"
    value = None
    total_value = 0.0
    if features.value is not None:
        value = features.value.reindex(features.frame.index).to_numpy(
            dtype="float64", na_value=np.nan
        )
        total_value = float(np.nansum(value))
    outcome_cols = [
        c
        for c in features.extras.columns
        if (outcome_columns is None or c in outcome_columns)
        and pd.api.types.is_float_dtype(features.extras[c])
        and set(pd.unique(features.extras[c].dropna())) <= {0.0, 1.0}
    ]
    attribute_cols = [c for c in features.extras.columns if c not in outcome_cols]

    base_stats = _base_stats(features, logged)
    segments: list[dict[str, Any]] = []
    all_traits: list[list[dict[str, Any]]] = []
    for sid in range(k):
        mask = labels == sid
        size = int(mask.sum())
        share = size / n if n else 0.0
        traits = _traits(features, mask, base_stats) if size else []
        value_share = None
        if value is not None and total_value > 0:
            value_share = float(np.nansum(value[mask])) / total_value
        value_index = value_share / share if value_share is not None and share > 0 else None
        typical = {
            c: float(
                np.nanmedian(features.frame[c].to_numpy(dtype="float64", na_value=np.nan)[mask])
            )
            if size
            and np.isfinite(
                features.frame[c].to_numpy(dtype="float64", na_value=np.nan)[mask]
            ).any()
            else None
            for c in features.numeric
        }
        top_categories = {}
        for c in features.categorical:
            counts = features.frame[c].astype("string")[mask].value_counts(normalize=True)
            if len(counts):
                top_categories[c] = [str(counts.index[0]), float(counts.iloc[0])]
        outcomes = {}
        for c in outcome_cols:
            col = features.extras[c].to_numpy(dtype="float64", na_value=np.nan)
            seg_vals = col[mask]
            if np.isfinite(seg_vals).any():
                outcomes[c] = {
                    "segment_rate": float(np.nanmean(seg_vals)),
                    "base_rate": float(np.nanmean(col)),
                }
        attributes, attribute_medians = _attributes(features.extras, attribute_cols, mask)
        predicted = _predicted(predictions or {}, mask)
        segments.append(
            {
                "id": sid,
                "size": size,
                "share": share,
                "value_share": value_share,
                "value_index": value_index,
                "typical": typical,
                "top_categories": top_categories,
                "outcomes": outcomes,
                "predicted": predicted,
                "attributes": attributes,
                "attribute_medians": attribute_medians,
            }
        )
        all_traits.append(traits)

    _add_actions(segments, all_traits)
    names = unique_names(all_traits, default_noun)
    for seg, traits, name in zip(segments, all_traits, names, strict=True):
        seg["name"] = name
        seg["traits"] = [{k: v for k, v in t.items() if k != "_word"} for t in traits[:6]]
        seg["description"] = _describe(seg, traits, features)
    keys = ["id", "name", "description", "action", "action_detail", "size", "share"]
    return [{**{key: s[key] for key in keys}, **s} for s in segments]


def _predicted(
    predictions: Mapping[str, tuple[str, np.ndarray]], mask: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Per propensity column: its use, the segment's and the base's mean probability and
    their ratio (the index; None when the base mean is 0)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (use, p) in predictions.items():
        values = np.asarray(p, dtype="float64")
        if not mask.any() or not np.isfinite(values).any():
            continue
        seg, base = float(np.nanmean(values[mask])), float(np.nanmean(values))
        out[name] = {
            "use": use,
            "segment_mean": seg,
            "base_mean": base,
            "index": seg / base if base > 0 else None,
        }
    return out


def _attributes(
    extras: pd.DataFrame, columns: list[str], mask: np.ndarray
) -> tuple[dict[str, list[Any]], dict[str, dict[str, float]]]:
    """Per attribute column: its most common value and share in the segment, or for a
    number with many values (a birth year, an income) the segment and base medians."""
    common: dict[str, list[Any]] = {}
    medians: dict[str, dict[str, float]] = {}
    for c in columns:
        col = extras[c]
        if col.nunique() <= 1:  # the same for everyone: says nothing about a segment
            continue
        number = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if number and col.nunique() > 12:
            values = col.to_numpy(dtype="float64", na_value=np.nan)
            if np.isfinite(values[mask]).any():
                medians[c] = {
                    "segment_median": float(np.nanmedian(values[mask])),
                    "base_median": float(np.nanmedian(values)),
                }
            continue
        if number:  # a few whole numbers (children at home): 1, not 1.0
            col = col.map(lambda v: _fmt(float(v)) if pd.notna(v) else v)
        counts = col.astype("string")[mask].value_counts(normalize=True)
        if len(counts):
            common[c] = [str(counts.index[0]), float(counts.iloc[0])]
    return common, medians


def _add_actions(segments: list[dict[str, Any]], all_traits: list[list[dict[str, Any]]]) -> None:
    """Each segment's action (all different), why, and the position it was read from."""
    signals = [
        signals_from(
            traits,
            seg["value_index"],
            seg["outcomes"],
            risk_index=propensity_index(seg["predicted"], "risk"),
            response_index=propensity_index(seg["predicted"], "response"),
        )
        for seg, traits in zip(segments, all_traits, strict=True)
    ]
    for seg, signal, chosen in zip(segments, signals, assign_actions(signals), strict=True):
        seg["action"] = chosen.action
        seg["action_detail"] = chosen.detail
        seg["action_reason"] = chosen.reason
        seg["position"] = {key: _round(getattr(signal, key)) for key in sorted(signal.measured)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


def unique_names(all_traits: list[list[dict[str, Any]]], default_noun: str) -> list[str]:
    """A unique name per segment (see module docs); deterministic for the same traits."""
    depth = [2] * len(all_traits)
    names = [_name(_pick_words(t, 2), default_noun) for t in all_traits]
    for _ in range(4):
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(name, []).append(i)
        dupes = [ids for ids in groups.values() if len(ids) > 1]
        if not dupes:
            break
        for ids in dupes:
            for i in ids:
                depth[i] += 1
                names[i] = _name(_pick_words(all_traits[i], depth[i]), default_noun)
    generic = "Mainstream " + default_noun
    out = []
    for name in names:
        if name == default_noun.capitalize():
            name = generic
        out.append(name)
    counts: dict[str, int] = {}
    for name in out:
        counts[name] = counts.get(name, 0) + 1
    return [f"{name} (segment {i})" if counts[name] > 1 else name for i, name in enumerate(out)]


def _describe(seg: dict[str, Any], traits: list[dict[str, Any]], features: Features) -> str:
    value_label = label(str(features.value.name)) if features.value is not None else ""
    if not value_label.endswith("total"):
        value_label = f"total {value_label}"
    parts = [
        f"{seg['name']}: {seg['size']:,} customers ({seg['share']:.0%} of the base)"
        + (
            f" bringing {seg['value_share']:.0%} of {value_label}."
            if seg["value_share"] is not None and features.value is not None
            else "."
        )
    ]
    strong = [t for t in traits if abs(t["effect"]) >= TRAIT_MIN_EFFECT][:4]
    if strong:
        parts.append("Compared with the whole base: " + "; ".join(_phrase(t) for t in strong) + ".")
    else:
        parts.append("Close to the base average on every feature.")
    cats = [
        f"{label(c)} {display_value(v)} ({p:.0%})"
        for c, (v, p) in seg["top_categories"].items()
        if v != MISSING_CATEGORY and not any(t["feature"] == c for t in strong)
    ][:3]
    if cats:
        parts.append("Most common: " + ", ".join(cats) + ".")
    for c, (v, p) in seg["attributes"].items():
        parts.append(f"Mostly {label(c)} {display_value(v)} ({p:.0%}).")
    for c, med in seg["attribute_medians"].items():
        parts.append(
            f"{label(c).capitalize()}: median {human_value(c, med['segment_median'])} "
            f"(vs {human_value(c, med['base_median'])} overall)."
        )
    for c, rates in seg["outcomes"].items():
        parts.append(
            f"{label(c).capitalize()} rate {rates['segment_rate']:.0%} "
            f"(vs {rates['base_rate']:.0%} overall)."
        )
    for c, means in seg.get("predicted", {}).items():
        parts.append(
            f"Predicted {label(c.removeprefix('p_'))} {means['segment_mean']:.0%} "
            f"(vs {means['base_mean']:.0%} overall)."
        )
    parts.append(
        f"Suggested action: {seg['action']} - {seg['action_detail']} (why: {seg['action_reason']})."
    )
    return " ".join(parts)
