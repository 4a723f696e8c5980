"""The words of a diagnosis, shared by the chat commands (诊断) and the CLI (jxcbot diagnose): the failing checks
with their fixes, and the three books side by side with the conflicts and the freeze log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo

from core.errors import CheckResult
from core.ledger.diagnose import DocumentDiagnosis, PairDiagnosis
from core.ledger.doctypes import DOC_TYPES, STATUS_ZH
from core.types import fq

FREEZE_EVENTS = {"freeze": "冻结", "trigger": "再次触发", "unfreeze": "解冻"}


def _by(who: str | None) -> str:
    """（who） after a freeze event, when a person did it (the integrity sweep is 'system')."""
    return f"（{who}）" if who and who != "system" else ""


def check_lines(results: Sequence[CheckResult]) -> list[str]:
    """One numbered line per failed check with its fix."""
    return [f"{i}. {'⚠ 警告' if r.warning else '✗'} {r.message_zh}\n   处理办法：{r.fix_zh}"
            for i, r in enumerate(results, start=1)]


def document_head(d: DocumentDiagnosis) -> str:
    """诊断 <单号>（type, status)."""
    return f"诊断 {d.number}（{DOC_TYPES[d.type].name_zh}，{STATUS_ZH[d.status]}）"


def document_lines(d: DocumentDiagnosis) -> list[str]:
    """What the diagnosis of a document says, below its head."""
    if d.status not in ("draft", "submitted", "rejected"):
        return [f"该单据{STATUS_ZH[d.status]}，无需过账检查。"]  # the status says 已…
    if not d.failures:
        return ["全部检查通过，可以过账。"]
    return [f"共 {len(d.failures)} 项未通过：", *check_lines(d.failures)]


def books(d: PairDiagnosis) -> list[tuple[str, str]]:
    """The three books of a product in a warehouse: (book, what it says)."""
    u = d.unit
    count = "无盘点记录" if d.count_number is None else (
        f"{d.count_number} 实盘 {fq(d.counted_qty)}{u}（当时账面 {fq(d.count_book_qty)}{u}）")
    return [("库存账", f"在库 {fq(d.ledger_on_hand)}{u}，借出 {fq(d.ledger_on_loan)}{u}，"
                       f"采购入库 {fq(d.ledger_received)}{u}，销售净出库 {fq(d.ledger_sold)}{u}"),
            ("财务账", f"应付对应 {fq(d.payable_qty)}{u}，应收对应 {fq(d.receivable_qty)}{u}"),
            ("实物账", count)]


def pair_head(d: PairDiagnosis) -> str:
    """诊断 <name>（SKU）@ warehouse, frozen marked."""
    return f"诊断 {d.name}（{d.sku}）@ {d.warehouse}" + ("  【已冻结】" if d.frozen else "")


def pair_tail(d: PairDiagnosis, tz: tzinfo) -> list[str]:
    """The conflicts and the freeze log (the first trigger time first)."""
    out = []
    if d.conflicts:
        out.append("冲突：")
        out += [f"  ⚠ [{c.books}] {c.message_zh}" for c in d.conflicts]
    else:
        out.append("三账一致，未发现冲突。")
    if d.freeze_events:
        out.append("冻结事件日志：")
        out += [f"  {at.astimezone(tz):%Y-%m-%d %H:%M:%S}  {FREEZE_EVENTS.get(ev, ev)}  {why}" + _by(who)
                for at, ev, why, who in d.freeze_events]
    return out
