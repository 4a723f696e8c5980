"""A suggestion's explanation as data: forecast per day, cover, safety stock, stock position and rounding."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import ROUND_HALF_UP, Decimal

from core.replenish.anchors import Override

QTY_PLACES = 6  # stock quantities keep the ledger's six decimals


def to_dec(value: float, places: int = QTY_PLACES) -> Decimal:
    """An engine float as a Decimal rounded half up to `places` decimals (via repr, so 12.345 stays 12.345)."""
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Explanation:
    """Why the suggestion is what it is. The fields compose exactly (exactly in Decimal after as_decimal()):

    cover_demand = Σ forecast; order_up_to = cover_demand + safety_stock;
    projected = on_hand + on_order + requested − reserved; need = max(0, order_up_to − projected);
    suggested = need + rounding (rounding from MOQ and pack size).
    """

    index: int
    strategy: str  # dynamic / static / fixed
    method: str  # dow-wma / tsb / static-average
    segment: str  # smooth / erratic / intermittent / lumpy
    lead_days: float | Decimal
    lead_std_days: float | Decimal
    review_days: float | Decimal
    cover_days: int
    forecast: tuple[float | Decimal, ...]  # units per day over the cover days, today first
    promo_days: tuple[bool, ...]  # which of those days are promotion days
    uplift: float | Decimal  # multiplier applied on promotion days
    cover_demand: float | Decimal
    service_level: float | Decimal
    safety_stock: float | Decimal
    order_up_to: float | Decimal
    on_hand: float | Decimal
    on_order: float | Decimal
    requested: float | Decimal
    reserved: float | Decimal
    projected: float | Decimal
    need: float | Decimal
    moq: float | Decimal
    pack: float | Decimal
    rounding: float | Decimal
    suggested: float | Decimal
    anchor: Override | None = None

    def as_decimal(self, places: int = 2) -> Explanation:
        """The same explanation in Decimals: forecasts and safety stock to `places` decimals, stock quantities to
        six; derived fields recomputed from the rounded parts so every identity in the class doc holds exactly."""
        forecast = tuple(to_dec(v, places) for v in self.forecast)
        cover = sum(forecast, Decimal(0))
        ss = to_dec(self.safety_stock, places)
        up_to = cover + ss
        stock = {f: to_dec(getattr(self, f), QTY_PLACES) for f in ("on_hand", "on_order", "requested", "reserved")}
        position = stock["on_hand"] + stock["on_order"] + stock["requested"] - stock["reserved"]
        need = max(Decimal(0), up_to - position)
        suggested = to_dec(self.suggested, QTY_PLACES)
        small = {f.name: to_dec(getattr(self, f.name), places) for f in fields(self)
                 if f.name in ("lead_days", "lead_std_days", "review_days", "uplift", "service_level")}
        return replace(self, forecast=forecast, cover_demand=cover, safety_stock=ss, order_up_to=up_to,
                       projected=position, need=need, suggested=suggested, rounding=suggested - need,
                       moq=to_dec(self.moq, QTY_PLACES), pack=to_dec(self.pack, QTY_PLACES), **stock, **small)
