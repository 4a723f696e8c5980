"""Scan-to-issue: what a scanned code says (EAN-13, Code-128, GS1 with batch and expiry), and the rule that lines
of scan-required document types are scanned (WeCom) or name the exact barcode and batch (DingTalk, console)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.errors import DomainError
from core.models import Product

SCAN_FIX = "请用「扫码」扫描商品条码和批次"
# GS1 application identifiers jxcbot reads: (01) GTIN-14, (10) batch, (17) expiry YYMMDD.
_GS1 = re.compile(r"\((\d{2,4})\)([^()]*)")
_FNC1 = "\x1d"


@dataclass(frozen=True)
class Scanned:
    """A scanned code: the product's barcode, and the batch and expiry when the code carries them (GS1)."""

    barcode: str
    batch: str = ""
    expiry: date | None = None
    raw: str = ""
    check_ok: bool = True  # False: 13 digits whose EAN-13 check digit is wrong (a misread, unless a product has it)


def ean13_ok(code: str) -> bool:
    """True for 13 digits whose last one is the EAN-13 check digit of the other twelve."""
    if len(code) != 13 or not code.isdigit():
        return False
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(code[:12]))
    return (10 - total % 10) % 10 == int(code[12])


def _gtin_to_barcode(gtin: str) -> str:
    """A GTIN-14 with a leading 0 is the EAN-13 inside it."""
    return gtin[1:] if len(gtin) == 14 and gtin.startswith("0") else gtin


def _expiry(yymmdd: str) -> date | None:
    if not re.fullmatch(r"\d{6}", yymmdd):
        return None
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    try:
        return date(2000 + yy, mm, dd or 28)  # GS1: day 00 means the month's end; 28 is safe for every month
    except ValueError:
        return None


def parse_scan(text: str) -> Scanned:
    """What a scan result says. WeCom's ScanResult may carry a type prefix ("EAN_13,6901234567892"); GS1 codes
    come bracketed ("(01)06901234567892(10)B2026(17)270501"). DomainError for a code that is none of these; a
    13-digit code with a wrong check digit is returned with check_ok False (product_of refuses it unless a
    product carries exactly that code)."""
    raw = text.strip()
    code = raw.split(",", 1)[1].strip() if "," in raw else raw
    if code.startswith("("):
        fields = {ai: value.strip().rstrip(_FNC1) for ai, value in _GS1.findall(code)}
        if "01" not in fields:
            raise DomainError("SCAN_UNREADABLE", f"扫到的码里没有商品条码（GS1 缺少 (01)）：{raw[:40]}", SCAN_FIX)
        return Scanned(_gtin_to_barcode(fields["01"]), fields.get("10", ""), _expiry(fields.get("17", "")), raw)
    if not code or len(code) > 64 or any(c.isspace() for c in code):
        raise DomainError("SCAN_UNREADABLE", f"没有读懂扫到的码：{raw[:40]}", SCAN_FIX)
    return Scanned(code, raw=raw, check_ok=not (len(code) == 13 and code.isdigit()) or ean13_ok(code))


async def product_of(session: AsyncSession, scanned: Scanned) -> Product:
    """The product whose barcode was scanned; DomainError for a misread check digit or an unknown barcode."""
    product = await session.scalar(select(Product).where(Product.barcode == scanned.barcode))
    if product is not None:
        return product
    if not scanned.check_ok:
        raise DomainError("BAD_CHECK_DIGIT", f"条码 {scanned.barcode} 的校验位不对，可能扫错或输错了",
                          "请重新扫描，或核对条码数字")
    raise DomainError("UNKNOWN_BARCODE", f"没有条码为 {scanned.barcode} 的商品",
                      "请核对商品档案里的条码（jxcbot import products），或发送「库存 <名称>」查找")


def wecom_scans(settings: Settings) -> bool:
    """Whether WeCom users have a scan button: the self-built app's menu (扫码, scancode_waitmsg) does; the
    intelligent robot ([wecom] mode = "longconn", or bot_id without corp_id) has no scan event, so its users type
    the exact barcode and batch, as on DingTalk."""
    table = settings.raw.get("wecom")
    if not isinstance(table, Mapping):
        return True
    mode = str(table.get("mode") or "").strip().lower()
    return not (mode == "longconn" or (not mode and table.get("bot_id") and not table.get("corp_id")))


def require_scanned(settings: Settings, doc_type: str, platform: str, query: str, product: Product,
                    batch: str, *, scanned: bool) -> str:
    """The rule for a line of `doc_type` entered in chat; returns the line's entry ("scan" or "text").

    Types in `[scan] required`: on WeCom's self-built app the line must come from a scan; on DingTalk, the WeCom
    intelligent robot and the console (no scan event there, or the console's 扫码 field which sends one) a typed
    line must name the product by its exact barcode and, for a batch-tracked product, the batch. Other types:
    anything goes."""
    if scanned:
        return "scan"
    if doc_type not in settings.scan_required:
        return "text"
    if platform == "wecom" and wecom_scans(settings):
        raise DomainError("SCAN_REQUIRED", "这类单据的商品必须扫码录入（出库必扫商品条码 + 批次）",
                          SCAN_FIX + "（企业微信应用菜单里的「扫码」）")
    if query.strip() != (product.barcode or "") or (product.batch_tracked and not batch.strip()):
        raise DomainError("SCAN_REQUIRED", "这类单据的商品必须扫码，或输入完整的商品条码和批次号（不能用名称或 SKU）",
                          f"{SCAN_FIX}；或发送完整条码和批次，例如：{product.barcode or '<条码>'} <批次号>")
    return "text"
