"""Marketing actions: one per segment, all different, each following from what sets the
segment apart.

A segment's position is read from its :class:`Signals` (value tier, lifecycle, engagement,
income and outcome rates, each relative to the whole base). Every action in
:data:`ACTION_RULES` scores how well it fits a segment (its ``fit``: higher is better, 0 is
"plausible", below 0 a stretch). :func:`assign_actions` then gives each segment its own
action: repeatedly the (segment, action) pair with the highest fit among the segments and
actions still free is assigned, so the clearest case claims an action first and two
segments never get the same one (ties: lower segment id, then the rule order). Each
assignment carries its reason, naming the signals that chose it.

When the model has propensities (:mod:`custseg.predict.propensity`), the segment's mean
predicted probability over the base's gives a ``risk_index`` (churn-like outcomes) and a
``response_index`` (response-like ones). Two rules read them and apply only when they are
present: "retain now" (risk index >= 1.3 and value index >= 0.8, ahead of every other
rule) and "target in campaigns" (response index >= 1.3 for a segment that is not high
value, value index < 1.5, and not lapsed).

To add a rule: add the signal to :class:`Signals` (filled in :func:`signals_from`) and
append an :class:`ActionRule` whose ``fit`` reads it; the assignment needs no change.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

UNDESIRABLE_OUTCOME = re.compile(r"churn|attrit|exit|cancel|default|lapse|lost|complain")
"""Outcome column names whose event is bad news (churn); others (response, accepted,
converted) are good news."""


@dataclass(frozen=True)
class Signals:
    """What sets a segment apart from the whole base, on comparable scales.

    ``value``: log2 of the value index (value share / customer share; 0 = average, +1 =
    twice its share of value; clipped to +-2); the others are standardised differences of
    the segment mean from the base (0 = average; see :mod:`custseg.model.personas`),
    ``response`` and ``churn`` the segment's outcome rate / the base rate (1 = average;
    None: no such outcome), ``risk_index`` and ``response_index`` the segment's mean
    predicted probability of a churn-like / response-like outcome / the base's (1 =
    average; None: the model has no such propensity). ``measured``: the signals the data
    has (a rule needing another one is not available)."""

    value: float = 0.0
    recency: float = 0.0  # + : last bought longer ago
    tenure: float = 0.0  # - : newer customers
    frequency: float = 0.0  # + : buy / visit more often
    income: float = 0.0
    age: float = 0.0
    response: float | None = None
    churn: float | None = None
    risk_index: float | None = None
    response_index: float | None = None
    measured: frozenset[str] = frozenset({"value"})

    def lift(self, name: str) -> float:
        """An outcome's lift - 1 (0 when the data has no such outcome)."""
        value = getattr(self, name)
        return 0.0 if value is None else float(value) - 1.0


UNAVAILABLE = -5.0
"""The fit of a rule whose signals the data does not have."""

PROPENSITY_INDEX = 1.3
"""A risk or response index at least this high makes the propensity rules apply."""

RETAIN_VALUE_INDEX = 0.8
"""The least value index worth a "retain now" (below it there is little value to keep)."""

HIGH_VALUE_INDEX = 1.5
"""From this value index on, a segment is high value (no "target in campaigns")."""


@dataclass(frozen=True)
class ActionRule:
    name: str
    detail: str
    fit: Callable[[Signals], float]
    because: Callable[[Signals], str]
    needs: tuple[str, ...] = ()

    def score(self, signals: Signals) -> float:
        """The rule's fit, or :data:`UNAVAILABLE` when a signal it needs is not measured."""
        if not set(self.needs) <= signals.measured:
            return UNAVAILABLE
        return float(self.fit(signals))


def _value_text(s: Signals) -> str:
    index = 2.0**s.value
    return f"{index:.1f}x its share of value"


def _d(text: str, d: float) -> str:
    return f"{text} ({d:+.1f} sd)"


def _rate(name: str, lift: float | None) -> str:
    return f"{name} rate {lift or 0:.1f}x the base"


def _retain_now(s: Signals) -> float:
    index = s.risk_index or 0.0
    if index < PROPENSITY_INDEX or s.value < math.log2(RETAIN_VALUE_INDEX):
        return UNAVAILABLE
    return 1.0 + 2.5 * (index - 1.0) + 0.5 * max(s.value, 0.0)


def _target_in_campaigns(s: Signals) -> float:
    index = s.response_index or 0.0
    if index < PROPENSITY_INDEX or s.value >= math.log2(HIGH_VALUE_INDEX) or s.recency >= 0.5:
        return UNAVAILABLE
    return 0.2 + 2.5 * (index - 1.0)


ACTION_RULES: tuple[ActionRule, ...] = (
    ActionRule(
        "retain now",
        "valuable and predicted to leave: contact them first with a personal retention "
        "offer before they go",
        _retain_now,
        lambda s: f"predicted churn {s.risk_index or 0:.1f}x the base, {_value_text(s)}",
        needs=("risk_index",),
    ),
    ActionRule(
        "target in campaigns",
        "the most likely to respond: put them first in the next campaign",
        _target_in_campaigns,
        lambda s: f"predicted response {s.response_index or 0:.1f}x the base",
        needs=("response_index",),
    ),
    ActionRule(
        "retain and reward",
        "keep them close with loyalty rewards, early access and personal service; "
        "avoid blanket discounts",
        lambda s: 1.2 * s.value + 0.3 * s.frequency - 0.8 * max(s.recency, 0.0) - 0.3,
        lambda s: f"high value: {_value_text(s)}",
    ),
    ActionRule(
        "prevent churn",
        "they leave more often than others: a retention offer, a service call or a better "
        "plan before renewal",
        lambda s: 2.5 * s.lift("churn") + 0.3 * s.value - 0.2,
        lambda s: _rate("churn", s.churn),
        needs=("churn",),
    ),
    ActionRule(
        "invite to campaigns",
        "they answer campaigns more than others: put them first in the next campaign and "
        "test new offers on them",
        lambda s: 2.5 * s.lift("response") - 0.2,
        lambda s: _rate("response", s.response),
        needs=("response",),
    ),
    ActionRule(
        "win back",
        "they were worth a lot and have gone quiet: a personal win-back offer before they "
        "lapse for good",
        lambda s: s.recency + 0.6 * s.value - 0.3,
        lambda s: f"{_d('lapsed', s.recency)} while worth {_value_text(s)}",
        needs=("recency",),
    ),
    ActionRule(
        "nurture",
        "a young relationship: onboarding, a second-purchase incentive, show the range",
        lambda s: -s.tenure - 0.5 * max(s.recency, 0.0) - 0.3,
        lambda s: _d("new customers", s.tenure),
        needs=("tenure",),
    ),
    ActionRule(
        "upsell",
        "they can afford more than they spend here: premium tiers, bundles, trade-up offers",
        lambda s: s.income - max(s.value, 0.0) - 0.2,
        lambda s: f"{_d('high income', s.income)} but {_value_text(s)}",
        needs=("income",),
    ),
    ActionRule(
        "reward with value offers",
        "big spenders on a tight budget: loyalty points and value-for-money packs rather "
        "than premium offers",
        lambda s: s.value - s.income - 0.4,
        lambda s: f"{_value_text(s)} on {_d('a lower income', s.income)}",
        needs=("income",),
    ),
    ActionRule(
        "cross-sell",
        "they come often but keep to a few things: recommend neighbouring categories and bundles",
        lambda s: s.frequency - 0.5 * abs(s.value) - 0.2,
        lambda s: _d("frequent", s.frequency),
        needs=("frequency",),
    ),
    ActionRule(
        "grow frequency",
        "they buy rarely but have not left: reminders, subscriptions and reasons to come back "
        "sooner",
        lambda s: -s.frequency - max(s.recency, 0.0) - 0.3,
        lambda s: _d("infrequent", s.frequency),
        needs=("frequency",),
    ),
    ActionRule(
        "reactivate cheaply",
        "low value and drifting away: automated reminders only, no costly incentives",
        lambda s: s.recency - 0.8 * s.value - max(-s.tenure, 0.0) - 0.8,
        lambda s: f"{_d('lapsed', s.recency)}, {_value_text(s)}",
        needs=("recency",),
    ),
    ActionRule(
        "engage young customers",
        "a younger crowd: mobile and social channels, a loyalty programme that builds the "
        "habit early",
        lambda s: -s.age - 0.5,
        lambda s: _d("younger", s.age),
        needs=("age",),
    ),
    ActionRule(
        "serve personally",
        "an older crowd: personal service, clear offers and trusted channels (phone, mail, store)",
        lambda s: s.age - 0.5,
        lambda s: _d("older", s.age),
        needs=("age",),
    ),
    ActionRule(
        "reduce cost to serve",
        "low return on effort: serve through automated, low-cost channels and skip costly "
        "incentives",
        lambda s: (
            -s.value
            - 0.5 * max(s.income, 0.0)
            - 2.0 * max(s.lift("response"), 0.0)
            - max(-s.tenure, 0.0)  # new customers have not had time to be worth much
            - 0.5
        ),
        lambda s: f"low value: {_value_text(s)}",
    ),
    ActionRule(
        "test offers",
        "no lever stands out: test two or three offers on a sample before a full campaign",
        lambda s: -0.8,
        lambda s: "close to the base on value, lifecycle, engagement and response",
    ),
)
"""Every action with its fit (see the module docs); at least as many as the largest k."""

ACTIONS: dict[str, str] = {rule.name: rule.detail for rule in ACTION_RULES}
"""Action name -> what to do."""


def _effect(traits: list[dict[str, Any]], pattern: str) -> float:
    """The standardised difference of the strongest numeric trait whose feature matches."""
    for trait in traits:
        if trait.get("kind") != "categorical" and re.search(pattern, str(trait["feature"])):
            return float(trait["effect"])
    return 0.0


VALUE_CLIP = 2.0
"""log2 value index is clipped to +-2 (a quarter to four times the segment's share)."""

RECENCY = r"recency|days_since_last"
TENURE = r"tenure|days_since_(first|signup|join|enrol|dt_customer|customer)|since_first"
FREQUENCY = r"^frequency$|orders$|purchases_total$|visits|(^|_)purchases$"
INCOME = r"income|salary|earning"
AGE = r"(^|_)age($|_)|years_old"
SIGNAL_PATTERNS = {
    "recency": RECENCY,
    "tenure": TENURE,
    "frequency": FREQUENCY,
    "income": INCOME,
    "age": AGE,
}


def propensity_index(predicted: Mapping[str, Mapping[str, Any]] | None, use: str) -> float | None:
    """The highest index among a segment's propensities of this use (``risk`` or
    ``response``; ``predicted`` as in the persona: column -> use, means, index); None: none."""
    found = [
        float(d["index"]) for d in (predicted or {}).values() if d["use"] == use and d["index"]
    ]
    return max(found) if found else None


def signals_from(
    traits: list[dict[str, Any]],
    value_index: float | None,
    outcomes: Mapping[str, Mapping[str, float]] | None = None,
    *,
    risk_index: float | None = None,
    response_index: float | None = None,
) -> Signals:
    """A segment's :class:`Signals` from its persona traits (strongest first), value index,
    outcome rates (``{column: {segment_rate, base_rate}}``) and propensity indexes."""
    vi = value_index if value_index is not None and math.isfinite(value_index) else 1.0
    response: float | None = None
    churn: float | None = None
    for name, rates in (outcomes or {}).items():
        base = float(rates.get("base_rate") or 0.0)
        if base <= 0:
            continue
        lift = float(rates.get("segment_rate") or 0.0) / base
        if UNDESIRABLE_OUTCOME.search(name.lower()):
            churn = lift if churn is None else max(churn, lift)
        else:
            response = lift if response is None else max(response, lift)
    numeric = [str(t["feature"]) for t in traits if t.get("kind") != "categorical"]
    measured = {"value"} | {
        name
        for name, pattern in SIGNAL_PATTERNS.items()
        if any(re.search(pattern, f) for f in numeric)
    }
    measured |= {name for name, lift in (("response", response), ("churn", churn)) if lift}
    propensities = (("risk_index", risk_index), ("response_index", response_index))
    measured |= {name for name, index in propensities if index is not None}
    effects = {name: _effect(traits, pattern) for name, pattern in SIGNAL_PATTERNS.items()}
    return Signals(
        value=min(max(math.log2(max(vi, 1e-9)), -VALUE_CLIP), VALUE_CLIP),
        response=response,
        churn=churn,
        risk_index=risk_index,
        response_index=response_index,
        measured=frozenset(measured),
        **effects,
    )


@dataclass(frozen=True)
class Assignment:
    action: str
    detail: str
    fit: float
    reason: str


def best_action(signals: Signals) -> Assignment:
    """The best-fitting action for one segment on its own (no uniqueness)."""
    return assign_actions([signals])[0]


def assign_actions(segments: list[Signals]) -> list[Assignment]:
    """One action per segment, all different (see the module docs)."""
    fits = [[rule.score(s) for rule in ACTION_RULES] for s in segments]
    free_segments = set(range(len(segments)))
    free_rules = set(range(len(ACTION_RULES)))
    chosen: dict[int, Assignment] = {}
    while free_segments and free_rules:
        i, j = max(
            ((i, j) for i in free_segments for j in free_rules),
            key=lambda ij: (round(fits[ij[0]][ij[1]], 9), -ij[0], -ij[1]),
        )
        rule = ACTION_RULES[j]
        chosen[i] = Assignment(rule.name, rule.detail, fits[i][j], rule.because(segments[i]))
        free_segments.discard(i)
        free_rules.discard(j)
    for i in free_segments:  # more segments than actions: the best fit, shared
        j = max(range(len(ACTION_RULES)), key=lambda j: fits[i][j])
        rule = ACTION_RULES[j]
        chosen[i] = Assignment(rule.name, rule.detail, fits[i][j], rule.because(segments[i]))
    return [chosen[i] for i in range(len(segments))]
