"""What a discrepancy needs before sign-off: a type on every line and at least one photo, checked and kept."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.ledger.doctypes import DISCREPANCY_TYPES, STATUS_ZH
from core.ledger.documents import get_document
from core.models import Approval, Attachment, Document, DocumentLine, PendingUpload

MAX_PHOTO = 5 * 1024 * 1024  # bytes
UPLOAD_WINDOW = timedelta(minutes=15)  # after 凭证 <单号>, the next picture within this time is kept with it
MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))
EVIDENCE = "evidence"  # a photo backing a document (count evidence)
SIGNATURE = "signature"  # the customer's signature on a borrow slip (签字 <单号>, then a picture)


def photo_type(data: bytes) -> str:
    """The picture's content type from its first bytes (PNG or JPEG); DomainError for anything else."""
    if len(data) > MAX_PHOTO:
        raise DomainError("PHOTO_TOO_BIG", f"图片太大（{len(data) // 1024} KB），最大 {MAX_PHOTO // 1024 // 1024} MB",
                          "请压缩或截图后重新发送")
    for magic, kind in MAGIC:
        if data.startswith(magic):
            return kind
    raise DomainError("NOT_A_PHOTO", "这不是 PNG 或 JPEG 图片", "请发送照片（PNG 或 JPEG 格式）")


def discrepancy_type(word: str) -> str:
    """The discrepancy type named by a word (or its number 1–5)."""
    w = word.strip()
    if w.isdigit() and 1 <= int(w) <= len(DISCREPANCY_TYPES):
        return DISCREPANCY_TYPES[int(w) - 1]
    for t in DISCREPANCY_TYPES:
        if w == t or (len(w) >= 2 and w in t):
            return t
    raise DomainError("BAD_DISCREPANCY_TYPE", f"没有差异类型「{word}」",
                      "请选择：" + "、".join(f"{i} {t}" for i, t in enumerate(DISCREPANCY_TYPES, start=1)))


async def discrepancy_for_edit(session: AsyncSession, number: str) -> Document:
    """A discrepancy document whose types and photos may still change: before sign-off, or rejected / withdrawn
    to be fixed; DomainError while it is being signed or once it is posted or cancelled."""
    doc = await get_document(session, number, lock=True)
    if doc.type != "discrepancy":
        raise DomainError("NOT_DISCREPANCY", f"单据 {doc.number} 不是盘点差异单",
                          "差异类型和凭证照片只能加在盘点差异单（CY 开头）上")
    if doc.status not in ("submitted", "rejected", "draft"):
        raise DomainError("DISCREPANCY_CLOSED", f"差异单 {doc.number} 已{STATUS_ZH[doc.status]}，不能再修改",
                          f"发送「单据 {doc.number}」查看")
    signing = await session.scalar(select(Approval.id).where(Approval.document_id == doc.id,
                                                             Approval.status == "pending"))
    if signing is not None:
        raise DomainError("SIGNING", f"差异单 {doc.number} 正在会签，不能再修改",
                          f"如需修改，请签核人驳回后再改，改好发送「重新提交 {doc.number}」")
    return doc


async def set_type(session: AsyncSession, doc: Document, line_no: int, kind: str, note: str = "") -> DocumentLine:
    """Set a discrepancy line's type (and append the note to the document's note)."""
    line = next((ln for ln in doc.lines if ln.line_no == line_no), None)
    if line is None:
        raise DomainError("NO_LINE", f"差异单 {doc.number} 没有第 {line_no} 行",
                          f"行号为 1–{len(doc.lines)}；发送「单据 {doc.number}」查看")
    line.discrepancy_type = discrepancy_type(kind)
    if note.strip():
        doc.note = (doc.note + "\n" if doc.note else "") + f"第{line_no}行 {line.discrepancy_type}：{note.strip()}"
    await session.flush()
    return line


async def expect_photo(session: AsyncSession, user_id: int, doc: Document, now: datetime,
                       kind: str = EVIDENCE) -> None:
    """The person's next picture (within UPLOAD_WINDOW) is kept with the document, as `kind` (evidence or
    signature)."""
    await session.execute(delete(PendingUpload).where(PendingUpload.user_id == user_id))
    session.add(PendingUpload(user_id=user_id, document_id=doc.id, kind=kind, until=now + UPLOAD_WINDOW))
    await session.flush()


async def awaited_upload(session: AsyncSession, user_id: int, now: datetime) -> tuple[Document, str] | None:
    """The document the person was asked to send a photo for and the kind of photo, while the window is open."""
    row = await session.get(PendingUpload, user_id)
    if row is None or row.until < now:
        return None
    doc = await session.get(Document, row.document_id)
    return (doc, row.kind) if doc is not None else None


async def awaited_document(session: AsyncSession, user_id: int, now: datetime) -> Document | None:
    """The document the person was asked to send a photo for, while the window is open."""
    found = await awaited_upload(session, user_id, now)
    return found[0] if found else None


async def attach_photo(session: AsyncSession, doc: Document, data: bytes, user_id: int, platform: str,
                       now: datetime, kind: str = EVIDENCE) -> tuple[Attachment, bool]:
    """Keep a checked photo with the document as `kind`; (attachment, newly kept) — the same photo twice is kept
    once."""
    content_type = photo_type(data)
    digest = hashlib.sha256(data).hexdigest()
    found = await session.scalar(select(Attachment).where(Attachment.document_id == doc.id,
                                                          Attachment.sha256 == digest))
    if found is not None:
        return found, False
    row = Attachment(document_id=doc.id, kind=kind, content_type=content_type, size=len(data), sha256=digest,
                     data=data, uploaded_by_id=user_id, platform=platform, at=now)
    session.add(row)
    await session.flush()
    return row, True


async def evidence_photos(session: AsyncSession, doc: Document, limit: int = 3) -> list[bytes]:
    """The document's first `limit` evidence photos, in the order they were kept."""
    return list(await session.scalars(select(Attachment.data).where(Attachment.document_id == doc.id,
                                                                    Attachment.kind == EVIDENCE)
                                      .order_by(Attachment.id).limit(limit)))


async def missing_for_sign_off(session: AsyncSession, doc: Document) -> list[str]:
    """What the discrepancy still lacks before it can go to sign-off (empty: ready)."""
    out = []
    untyped = [ln.line_no for ln in doc.lines if not ln.discrepancy_type]
    if untyped:
        out.append("第 " + "、".join(map(str, untyped)) + " 行未选差异类型")
    photos = await session.scalar(select(func.count()).select_from(Attachment)
                                  .where(Attachment.document_id == doc.id))
    if not photos:
        out.append("还没有凭证照片")
    return out


async def has_signature(session: AsyncSession, doc: Document) -> bool:
    """Whether the document holds a valid customer signature (one taken before its lines changed is void)."""
    found = await session.scalar(select(Attachment.id).where(Attachment.document_id == doc.id,
                                                             Attachment.kind == SIGNATURE).limit(1))
    return found is not None
