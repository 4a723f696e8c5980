"""A suggestion's explanation in Chinese, for cards and the command line ("why 24")."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from core.replenish.explain import Explanation
from core.types import fq

STRATEGY_ZH = {"dynamic": "动态预测", "static": "静态公式", "fixed": "固定安全库存"}
METHOD_ZH = {"dow-wma": "加权移动平均×星期系数", "tsb": "TSB 间歇需求法", "static-average": "近 28 天平均"}
SEGMENT_ZH = {"smooth": "平稳", "erratic": "波动", "intermittent": "间歇", "lumpy": "块状"}


def _q(value: Decimal | float, places: int = 2) -> str:
    return fq(Decimal(repr(value)) if isinstance(value, float) else value.quantize(Decimal(1).scaleb(-places)))


def _runs(flags: tuple[bool, ...]) -> list[tuple[int, int]]:
    """Consecutive True stretches as (first, last) offsets, both inclusive."""
    out: list[tuple[int, int]] = []
    for k, on in enumerate(flags):
        if on and out and out[-1][1] == k - 1:
            out[-1] = (out[-1][0], k)
        elif on:
            out.append((k, k))
    return out


def promo_zh(e: Explanation, today: date | None = None) -> str | None:
    """The promotion days inside the cover period and their uplift, or None when there are none. The cover period
    starts today (day 1); with `today` the days are given as dates."""
    stretches = _runs(tuple(bool(v) for v in e.promo_days))
    if not stretches:
        return None

    def day(k: int) -> str:
        return f"{today + timedelta(days=k):%m-%d}" if today is not None else f"第 {k + 1} 天"

    spans = "、".join(day(a) if a == b else f"{day(a)} 至 {day(b)}" for a, b in stretches)
    text = f"覆盖期内有促销：{spans}，共 {sum(b - a + 1 for a, b in stretches)} 天"
    uplift = Decimal(repr(e.uplift)) if isinstance(e.uplift, float) else Decimal(e.uplift)
    if abs(uplift - 1) < Decimal("0.005"):
        return text + "，尚无可学习的历史促销，促销日未上调"
    return text + f"，促销日预测 ×{_q(e.uplift)}（从历史促销学到，并向品类的系数收缩）"


def why_zh(e: Explanation, unit: str = "", buffer_days: Decimal | int = 0, today: date | None = None) -> str:
    """One paragraph saying how the suggestion was reached; pass an explanation from .as_decimal(), the product
    buffer days its review days include and (for dates of promotions in the cover period) the day it starts."""
    review = Decimal(e.review_days) - Decimal(buffer_days)
    cover = (f"覆盖 {e.cover_days} 天 = 提前期 {_q(e.lead_days)} 天（波动 ±{_q(e.lead_std_days)}）"
             f"+ 补货周期 {_q(review)} 天")
    if buffer_days:
        cover += f" + 缓冲 {_q(Decimal(buffer_days))} 天"
    parts = [
        f"策略：{STRATEGY_ZH.get(e.strategy, e.strategy)}（{METHOD_ZH.get(e.method, e.method)}，"
        f"{SEGMENT_ZH.get(e.segment, e.segment)}需求）",
        cover,
        f"预测需求 {_q(e.cover_demand)}{unit}（日均 {_q(e.cover_demand / max(e.cover_days, 1))}）",
    ]
    if e.anchor is not None:
        a = e.anchor
        parts.append(f"含人工锚点：日均 {_q(a.stat)} → 人工 {_q(a.manual)}，权重 {_q(a.weight_used)}，"
                     f"采用 {_q(a.blended)}（原因：{a.reason}）")
    promo = promo_zh(e, today)
    if promo is not None:
        parts.append(promo)
    ss = f"安全库存 {_q(e.safety_stock)}{unit}"
    if e.strategy != "fixed":
        ss += f"（服务水平 {_q(Decimal(e.service_level) * 100, 0)}%）"
    parts.append(ss)
    parts.append(f"补到 {_q(e.order_up_to)}{unit}")
    parts.append(f"可用 {fq(e.projected)} = 现有 {fq(e.on_hand)} + 在途 {fq(e.on_order)} + 已申请 "
                 f"{fq(e.requested)} − 战略客户预留 {fq(e.reserved)}")
    if e.need <= 0:
        parts.append("可用已达补货线，无需采购")
    else:
        rounding = f"缺 {_q(e.need)}{unit}"
        if e.rounding:
            rounding += f"，按起订量 {fq(e.moq)}、包装 {fq(e.pack)} 取整 +{_q(e.rounding)}"
        parts.append(rounding + f" → 建议采购 {fq(e.suggested)}{unit}")
    return "；".join(parts) + "。"
