"""Entry point: plan(PlanInputs) → Plan, vectorised over all products (arrays shape [n_products, n_days]).

Data contract (plain numpy; the database side builds it, see core/replenish/history.py):

* ``demand`` float64[n, T]: daily demand (posted sales issues), column T-1 = yesterday, column 0 on
  ``start_weekday`` (0 = Monday). ``stockout`` bool[n, T]: censored days (out of stock), never learned from.
* ``promo`` bool[n, T + horizon]: promotion calendar, the last ``horizon`` columns are today onward.
* per product float[n] (a scalar broadcasts): ``lead_mean``/``lead_std`` (days, learned per supplier from receipts),
  ``review_days``, ``service_level`` (0–1, e.g. the category's), ``on_hand``, ``on_order``, ``requested``,
  ``reserved``, ``moq``, ``pack``; ``category_ids`` int[n].
* ``strategy``: per product "dynamic" / "static" / "fixed" (or codes 0 / 1 / 2, see policy.py); ``fixed_safety``
  float[n] is the safety stock in units used by "fixed" products (demand over the cover still comes from the
  forecast).
* anchors: ``anchor_rate`` float[n] = the planner's forecast in units/day for the current month (NaN = none;
  monthly total ÷ days in month), ``anchor_weight`` (capped at anchors.WEIGHT_CAP), ``anchor_reason`` (required).

Quantities out (``Plan.suggested``) are already rounded to MOQ/pack multiples; ``Plan.explain(i).as_decimal()``
gives Decimals whose fields sum exactly to the suggestion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from core.replenish import anchors, policy
from core.replenish.classify import CLASS_NAMES
from core.replenish.explain import Explanation
from core.replenish.forecast import HORIZON, METHOD_NAMES, Forecast, ForecastParams, forecast
from core.replenish.safety import safety_stock, z_for

Array = np.ndarray


@dataclass
class PlanInputs:
    """Everything plan() needs, as arrays (see the module doc for shapes and units)."""

    demand: Array
    category_ids: Array
    lead_mean: Array | float
    lead_std: Array | float
    stockout: Array | None = None
    promo: Array | None = None
    review_days: Array | float = 7.0
    service_level: Array | float = 0.95
    on_hand: Array | float = 0.0
    on_order: Array | float = 0.0
    requested: Array | float = 0.0
    reserved: Array | float = 0.0
    moq: Array | float = 0.0
    pack: Array | float = 1.0
    strategy: object = None
    fixed_safety: Array | float = 0.0
    start_weekday: int = 0
    horizon: int = HORIZON
    anchor_rate: Array | None = None
    anchor_weight: Array | float = anchors.WEIGHT_CAP
    anchor_reason: Sequence[str | None] = ()
    params: ForecastParams = field(default_factory=ForecastParams)

    def vector(self, name: str) -> Array:
        """A per-product field as float64[n] (scalars broadcast)."""
        return np.broadcast_to(np.asarray(getattr(self, name), dtype=float), (len(self.demand),)).astype(float)


_EXPLAINED = ("lead_mean", "lead_std", "review_days", "service_level", "on_hand", "on_order", "requested", "reserved",
              "moq", "pack")


@dataclass
class Plan:
    """Suggestions and their parts for every product (float[n] unless noted)."""

    inputs: PlanInputs
    forecast: Forecast  # the statistical forecast parts (before anchors and strategies)
    daily: Array  # float[n, horizon]: forecast used per day (anchors applied; flat average for "static")
    strategy: Array  # int8[n]
    cover_days: Array  # int[n]: round(L + R)
    cover_demand: Array  # Σ daily over the cover days
    safety_stock: Array
    order_up_to: Array  # cover_demand + safety_stock
    projected: Array  # on hand + on order + requested − reserved
    need: Array  # max(0, order_up_to − projected)
    suggested: Array  # need rounded to MOQ / pack
    overrides: list[anchors.Override]

    @cached_property
    def _per_product(self) -> dict[str, list[float]]:
        """The explained per-product inputs as lists of floats, built once for all explain() calls."""
        return {name: self.inputs.vector(name).tolist() for name in _EXPLAINED}

    @cached_property
    def _override_of(self) -> dict[int, anchors.Override]:
        """Logged override by product row (the first one, should a row appear twice)."""
        out: dict[int, anchors.Override] = {}
        for o in self.overrides:
            out.setdefault(o.index, o)
        return out

    def explain(self, i: int) -> Explanation:
        """Product i's explanation (floats; .as_decimal() for the card)."""
        code = int(self.strategy[i])
        days = int(self.cover_days[i])
        over = self._override_of.get(i)
        vec = {name: values[i] for name, values in self._per_product.items()}
        return Explanation(
            index=i, strategy=policy.STRATEGY_NAMES[code],
            method="static-average" if code == policy.STATIC else METHOD_NAMES[self.forecast.method[i]],
            segment=CLASS_NAMES[self.forecast.segment[i]], lead_days=vec["lead_mean"], lead_std_days=vec["lead_std"],
            review_days=vec["review_days"], cover_days=days,
            forecast=tuple(float(v) for v in self.daily[i, :days]),
            promo_days=tuple(bool(v) for v in self.forecast.promo_future[i, :days]) if code != policy.STATIC
            else (False,) * days,
            uplift=float(self.forecast.uplift[i]) if code != policy.STATIC else 1.0,
            cover_demand=float(self.cover_demand[i]), service_level=vec["service_level"],
            safety_stock=float(self.safety_stock[i]), order_up_to=float(self.order_up_to[i]),
            on_hand=vec["on_hand"], on_order=vec["on_order"], requested=vec["requested"], reserved=vec["reserved"],
            projected=float(self.projected[i]), need=float(self.need[i]), moq=vec["moq"], pack=vec["pack"],
            rounding=float(self.suggested[i] - self.need[i]), suggested=float(self.suggested[i]), anchor=over)


def dynamic_safety(daily: Array, days: Array, sigma: Array, lead_mean: Array, lead_std: Array, review: Array,
                   z: Array) -> tuple[Array, Array]:
    """(demand over the cover days, SS = z·√((L+R)σd² + d²σL²) with d = that demand ÷ cover days)."""
    cover = policy.cover_demand(daily, days)
    return cover, safety_stock(z, cover / days, sigma, lead_mean, lead_std, review)


def plan(inputs: PlanInputs) -> Plan:
    """Forecast, safety stock and MOQ/pack-rounded order-up-to suggestion for every product."""
    demand = np.asarray(inputs.demand, dtype=float)
    n = demand.shape[0]
    fc = forecast(demand, inputs.stockout, inputs.promo, np.asarray(inputs.category_ids), inputs.horizon,
                  inputs.start_weekday, inputs.params)
    lead, lead_sd, review = inputs.vector("lead_mean"), inputs.vector("lead_std"), inputs.vector("review_days")
    strategy = policy.strategy_codes(inputs.strategy, n)
    days = policy.cover_days(lead, review)

    # Manual anchors move the baseline level; weekday profile and promotions still shape the days.
    level = fc.level
    overrides: list[anchors.Override] = []
    daily = fc.daily
    if inputs.anchor_rate is not None:
        manual = np.where(strategy == policy.DYNAMIC, np.asarray(inputs.anchor_rate, float), np.nan)
        level, _used, overrides = anchors.apply_anchors(fc.level, manual, inputs.anchor_weight,
                                                        inputs.anchor_reason)
        shape = daily / np.where(fc.level > 0, fc.level, 1.0)[:, None]
        shape[fc.level <= 0] = (fc.dow[:, (inputs.start_weekday + demand.shape[1] + np.arange(inputs.horizon)) % 7]
                                * np.where(fc.promo_future, fc.uplift[:, None], 1.0))[fc.level <= 0]
        daily = level[:, None] * shape

    z = z_for(inputs.vector("service_level"))
    cover, ss = dynamic_safety(daily, days, fc.sigma, lead, lead_sd, review, z)

    static = strategy == policy.STATIC
    if static.any():
        rate = policy.static_rate(demand[static])
        daily = daily.copy()
        daily[static] = rate[:, None]
        cover[static] = policy.cover_demand(daily[static], days[static])
        ss[static] = rate * lead[static]  # the old formula: average daily sales × lead time
    fixed = strategy == policy.FIXED
    ss[fixed] = inputs.vector("fixed_safety")[fixed]

    ss = np.maximum(ss, -cover)  # a service level below 50 % may cut into cover, never below zero stock
    up_to = cover + ss
    position = policy.projected(inputs.vector("on_hand"), inputs.vector("on_order"), inputs.vector("requested"),
                                inputs.vector("reserved"))
    need, suggested = policy.suggest(up_to, position, inputs.vector("moq"), inputs.vector("pack"))
    return Plan(inputs, fc, daily, strategy, days, cover, ss, up_to, position, need, suggested, overrides)
