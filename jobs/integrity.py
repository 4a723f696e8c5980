"""The integrity sweep: every few minutes the existing sweep_integrity freezes pairs whose balance disagrees with
their moves (the smallest scope) and the managers' channel is told which pair and the 诊断 command to run."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Message
from core.ledger.freeze import sweep_integrity
from core.models import Product, Warehouse
from jobs.context import JobContext
from jobs.registry import job, minute


@job("integrity", title="库存完整性巡检", cron="7-59/15 * * * *", period=minute, channel="managers")
async def integrity(ctx: JobContext) -> str:
    """Sweep, then one message per run listing what was frozen."""

    async def sweep(s: AsyncSession) -> list[tuple[str, str, str]]:
        found = await sweep_integrity(s, ctx.now)
        out = []
        for a in found:
            p, w = await s.get_one(Product, a.product_id), await s.get_one(Warehouse, a.warehouse_id)
            out.append((p.sku, w.code, a.reason))
        return out

    found = await ctx.db.write(sweep)
    if not found:
        return "无异常"
    lines = [f"- {sku} @ {wh}：{reason}，已冻结该商品在该仓库的出入库。处理：诊断 {sku} {wh}"
             for sku, wh, reason in found]
    await ctx.post(Message("markdown", title="库存完整性巡检：发现异常",
                           text="**库存完整性巡检发现异常并已冻结**\n" + "\n".join(lines)
                           + "\n核对修正后由主管发送：解冻 <SKU> <仓库> <说明>"), "anomalies")
    return f"冻结 {len(found)} 处"
