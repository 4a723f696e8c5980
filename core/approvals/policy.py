"""Who must sign a document type: the type's declared policy, unless `[approvals.<type>]` replaces it."""

from __future__ import annotations

from core.config import Settings
from core.ledger.doctypes import ApprovalPolicy, doc_type


def policy_for(settings: Settings, code: str) -> ApprovalPolicy | None:
    """The approval policy of a document type (None: it posts without sign-off)."""
    return settings.approvals.get(code, doc_type(code).approval)
