"""Replenishment commands: suggestions with their reasons, the back-test, anchors, strategies, promotions."""

from __future__ import annotations

import argparse
from datetime import date, datetime

from cli import render
from cli.parser import EXIT_OK
from core.config import Settings
from core.replenish.anchors_db import fva_report, set_anchor
from core.replenish.history import LT_MIN_OBSERVATIONS
from core.replenish.promotions_db import add_promotion, list_promotions, remove_promotion
from core.replenish.strategies_db import set_strategy
from core.replenish.suggest import backtest_history, suggest
from core.replenish.why import STRATEGY_ZH, why_zh
from core.storage import Database
from core.types import fq


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


async def cmd_replenish(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Purchase suggestions with their reasons, or the back-test on the posted history."""
    today = datetime.now(settings.timezone).date()
    if args.replenish_command in ("anchor", "fva", "strategy"):
        return await _replenish_settings(settings, args, db, today)
    if args.replenish_command == "promo":
        return await _replenish_promo(settings, args, db)
    if args.replenish_command == "backtest":
        r = await backtest_history(db, today=today, warehouse=args.warehouse, settings=settings, days=args.days,
                                   weeks=args.weeks)
        lay = r.layout
        print(f"补货回测（{args.warehouse or '全部仓库'}，截至昨天 {args.days} 天历史：预热 {lay.burn_weeks} 周 + "
              f"回测 {lay.weeks} 周，每周补货一次，缺货即损失销售；与 python -m bench.replenish 同一套模拟）")
        rows = [[label, _pct(m["hit_month"]), _pct(m["hit_month_fast"]), _pct(m["wape"]), _pct(m["bias"]),
                 _pct(m["fill_rate"]), _pct(m["stockout_days"]),
                 "—" if m["inventory_days"] is None else f"{m['inventory_days']:.1f}"]
                for label, m in (("静态公式（近 28 天平均）", r.static), ("动态预测", r.dynamic))]
        print(render.table(["策略", "月度 ±25% 命中率", "快动销品命中率", "WAPE", "偏差", "满足率", "缺货天数占比",
                            "平均库存天数"], rows))
        m = r.inventory_at_matched_fill
        if m is not None:
            print(f"同等满足率下的库存（动态 ÷ 静态）：{m:.2f}")
        print(f"参与评估的商品 {r.products} 个（其中快动销品 {r.fast_products} 个）；计分的 28 天窗口 {r.scored} 个，"
              f"无需求窗口 {r.zero_windows} 个不计入命中率，含缺货日、超出历史或此前有货历史不足的窗口 "
              f"{r.censored_windows} 个已排除；缺货日 {r.censored_days} 个商品日只回放、不计入满足率/缺货/库存。")
        print("说明：命中 = 预测与实际相差不超过实际的 25%；快动销品 = 日均销量 > 3；偏差 > 0 表示预测偏高；"
              "满足率 = 回放中满足的需求 ÷ 全部需求；缺货天数占比 = 回放中日末库存为 0 的商品日占比；"
              "平均库存天数 = 平均库存 ÷ 日均需求。静态公式用商品档案的提前期，动态预测用按供应商学到的提前期"
              "和品类服务水平；回放中的到货提前期按学到的均值和波动随机抽取（固定种子）。"
              "慢动销品的月度命中率受随机波动所限，天然偏低。")
        return EXIT_OK
    found = await suggest(db, today=today, warehouse=args.warehouse, settings=settings, everything=args.all)
    scope = args.warehouse or "全部仓库"
    if not found:
        print(f"采购建议（{scope}，{today}）：所有商品的可用量都已达到补货线，暂无需采购。")
        return EXIT_OK
    print(f"采购建议（{scope}，{today}，数量为库存单位，已按起订量和包装取整）")
    print(render.table(["SKU", "名称", "建议采购", "策略"],
                       [[x.sku, x.name, f"{fq(x.qty)}{x.unit}", STRATEGY_ZH[x.explanation.strategy]] for x in found]))
    for x in found:
        print(f"\n{x.name}（{x.sku}）建议 {fq(x.qty)}{x.unit}")
        print("  原因：" + why_zh(x.explanation, x.unit, x.buffer_days, today))
        notes = []
        if not x.lead_learned:
            notes.append(f"提前期取商品档案值（其供应商关联采购订单的入库不足 {LT_MIN_OBSERVATIONS} 次）")
        if x.censored_days:
            notes.append(f"{x.censored_days} 天缺货（或无库存）的销售未参与预测")
        if notes:
            print("  备注：" + "；".join(notes))
    return EXIT_OK


async def _replenish_settings(settings: Settings, args: argparse.Namespace, db: Database, today: date) -> int:
    """replenish anchor / fva / strategy."""
    if args.replenish_command == "anchor":
        a = await db.write(lambda s: set_anchor(s, settings, sku=args.sku, month=args.month, qty=args.qty,
                                                reason=args.reason, by=args.by, weight_cap=args.weight))
        print(f"已设置 {a.sku} {a.name} {a.month:%Y-%m} 的预测锚点：{fq(a.qty)}{a.unit}（权重上限 {fq(a.weight_cap)}，"
              f"统计预测 {fq(a.stat_qty)}{a.unit}），原因：{a.reason}。修改已记录。")
        return EXIT_OK
    if args.replenish_command == "strategy":
        st = await db.write(lambda s: set_strategy(
            s, category=args.category, strategy=args.strategy, service_level=args.service_level,
            fixed_qty=args.fixed_qty, review_days=args.review_days, by=args.by))
        extra = (f"，固定安全库存 {fq(st.fixed_qty)}" if st.fixed_qty is not None
                 else f"，服务水平 {fq(st.service_level)}")
        print(f"品类「{st.category}」补货策略：{STRATEGY_ZH[st.strategy]}{extra}，补货周期 {st.review_days} 天。")
        return EXIT_OK
    async with db.read() as s:
        r = await fva_report(s, settings, args.month, today=today)
    if not r.rows:
        print(f"{r.month:%Y-%m} 没有人工预测锚点。")
        return EXIT_OK
    print(f"{r.month:%Y-%m} 人工锚点的预测增值（FVA）")
    print(render.table(["SKU", "名称", "统计预测", "人工", "权重", "混合预测", "实际", "FVA", "原因"], [
        [x.sku, x.name, fq(x.stat), fq(x.manual), fq(x.weight_used), fq(x.blended),
         "未结束" if x.actual is None else fq(x.actual), "—" if x.fva is None else fq(x.fva), x.reason]
        for x in r.rows]))
    if r.fva is None:
        print("该月尚未结束（或没有实际需求），暂不能评估。")
    else:
        verdict = ("人工锚点让预测更准" if r.fva > 0
                   else "人工锚点没有改善预测" if r.fva == 0 else "人工锚点让预测变差")
        print(f"WAPE：统计 {_pct(float(r.stat_wape))}，混合 {_pct(float(r.blended_wape))} → {verdict}"
              f"（改善 {r.helped} 个，变差 {r.hurt} 个）。FVA > 0 表示人工调整有帮助。")
    return EXIT_OK


async def _replenish_promo(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """replenish promo add / list / remove."""
    if args.promo_command == "add":
        p = await db.write(lambda s: add_promotion(s, sku=args.sku, start=args.start, end=args.end,
                                                   reason=args.reason, by=args.by))
        print(f"已登记促销 #{p.id}：{p.sku} {p.name} {p.start} 至 {p.end}（共 {p.days} 天），原因：{p.reason}。"
              "补货预测会在这些天按学到的促销系数上调。")
        return EXIT_OK
    if args.promo_command == "remove":
        p = await db.write(lambda s: remove_promotion(s, args.id))
        print(f"已删除促销 #{p.id}：{p.sku} {p.name} {p.start} 至 {p.end}（{p.reason}）。")
        return EXIT_OK
    async with db.read() as s:
        found = await list_promotions(s, since=args.since)
    scope = f"{args.since} 起" if args.since else "全部"
    if not found:
        print(f"促销日历（{scope}）：没有促销。")
        return EXIT_OK
    tz = settings.timezone
    print(f"促销日历（{scope}，共 {len(found)} 个，日期含首尾两天）")
    print(render.table(["编号", "SKU", "名称", "开始", "结束", "天数", "原因", "登记人", "登记时间"], [
        [str(p.id), p.sku, p.name, str(p.start), str(p.end), str(p.days), p.reason, p.created_by,
         f"{p.created_at.astimezone(tz):%Y-%m-%d %H:%M}"] for p in found]))
    return EXIT_OK
