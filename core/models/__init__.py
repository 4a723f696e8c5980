"""ORM models of the whole schema; importing this module registers every table."""

from core.models.approvals import Approval, ApprovalEvent, ApprovalStep, Attachment
from core.models.base import Base, utcnow
from core.models.chat_state import CardCopy, PendingUpload
from core.models.documents import DocCounter, Document, DocumentLine
from core.models.integrity import FinanceEntry, Freeze, FreezeEvent
from core.models.jobs import JobRun
from core.models.ledger import ON_HAND, ON_LOAN, StockBalance, StockMove
from core.models.masters import ROLE_ZH, ROLES, Batch, Customer, Product, Supplier, User, Warehouse
from core.models.messaging import InboundEvent, OutboxMessage
from core.models.replenishment import STRATEGIES, ForecastAnchor, ForecastOverride, Promotion, ReplenishStrategy
from core.models.reports import HealthPlan, ReportFile

__all__ = [
    "ON_HAND",
    "ON_LOAN",
    "ROLES",
    "ROLE_ZH",
    "STRATEGIES",
    "Approval",
    "ApprovalEvent",
    "ApprovalStep",
    "Attachment",
    "Base",
    "Batch",
    "CardCopy",
    "Customer",
    "DocCounter",
    "Document",
    "DocumentLine",
    "FinanceEntry",
    "ForecastAnchor",
    "ForecastOverride",
    "Freeze",
    "FreezeEvent",
    "HealthPlan",
    "InboundEvent",
    "JobRun",
    "OutboxMessage",
    "PendingUpload",
    "Product",
    "Promotion",
    "ReplenishStrategy",
    "ReportFile",
    "StockBalance",
    "StockMove",
    "Supplier",
    "User",
    "Warehouse",
    "utcnow",
]
