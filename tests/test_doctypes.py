"""Per-type rules live on DocType, the posting checks are one ordered list, and core/ledger has no import circle."""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from core.config import VALIDATION_MODES, Settings
from core.ledger import checks, counts, finance, hooks, ordering
from core.ledger.diagnose import diagnose_document
from core.ledger.doctypes import (
    COUNTED,
    DOC_TYPES,
    NONE,
    NONZERO,
    POSITIVE,
    ApprovalPolicy,
    DocType,
    codes_where,
    doc_type,
)
from core.ledger.documents import create_document, submit_document
from core.ledger.freeze import freeze
from core.models import ROLES, Batch, Product, Warehouse
from tests.factories import line, post, seed

LEDGER = Path(__file__).resolve().parent.parent / "core" / "ledger"
EFFECTS = {"in", "out", "signed", "transfer", "lend", "lend_back", "count_diff", "none"}


@pytest.mark.parametrize("dt", list(DOC_TYPES.values()), ids=list(DOC_TYPES))
def test_every_type_declares_its_rules(dt: DocType) -> None:
    assert DOC_TYPES[dt.code] is doc_type(dt.code) is dt
    assert dt.effect in EFFECTS
    assert isinstance(dt.locks, bool) and isinstance(dt.unposted_blocks, bool)
    assert dt.validation in VALIDATION_MODES
    assert dt.approval is None or isinstance(dt.approval, ApprovalPolicy)
    if dt.approval is not None:
        assert set(dt.approval.roles) <= set(ROLES)
    assert dt.line_qty in (POSITIVE, NONZERO, COUNTED)
    assert dt.requires_ref is None or dt.requires_ref in DOC_TYPES
    assert len(set(dt.hooks)) == len(dt.hooks)


def test_prefixes_are_unique() -> None:
    assert len({t.prefix for t in DOC_TYPES.values()}) == len(DOC_TYPES)


def test_locking_and_blocking_types() -> None:
    """What LOCKING_TYPES and the opening comparisons said before, now asked of the types."""
    assert codes_where("locks") == ("transfer", "loss", "adjustment")
    assert codes_where("unposted_blocks") == ("opening",)
    assert codes_where("issues_expired") == ("loss",)


def test_default_validation_modes_match_the_config_defaults() -> None:
    defaults = Settings()
    for t in DOC_TYPES.values():
        assert t.validation_mode(defaults.validation) == defaults.validation_mode(t.code) == t.validation
        assert t.validation_mode({t.code: "loose"}) == "loose"  # [validation] overrides the type's default
        assert t.validation_mode({}) == t.validation


def test_discrepancy_needs_three_distinct_roles_in_parallel() -> None:
    policy = doc_type("discrepancy").approval
    assert policy is not None
    assert policy.roles == ("warehouse", "purchasing", "sales")
    assert len(set(policy.roles)) == 3
    assert policy.order == "parallel" and policy.distinct_people


def test_approval_defaults() -> None:
    manager = {"transfer", "loss", "adjustment", "opening", "borrow", "purchase_request"}
    for t in DOC_TYPES.values():
        if t.code in manager:
            assert t.approval is not None and t.approval.roles == ("manager",), t.code
        elif t.code != "discrepancy":
            assert t.approval is None, t.code


def test_approval_policy_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        ApprovalPolicy(())
    with pytest.raises(ValueError):
        ApprovalPolicy(("manager", "manager"))
    with pytest.raises(ValueError):
        ApprovalPolicy(("manager",), "random")  # type: ignore[arg-type]


def test_every_hook_name_is_implemented_and_used() -> None:
    registered = hooks.merge(finance.HOOKS, counts.HOOKS, ordering.HOOKS)
    used = {name for t in DOC_TYPES.values() for name in t.hooks}
    assert used == set(registered)
    table = hooks.by_event(DOC_TYPES.values(), registered)
    assert set(table) == set(hooks.EVENTS)
    assert all(set(per_type) == set(DOC_TYPES) for per_type in table.values())
    with pytest.raises(KeyError):
        hooks.by_event([DocType("x", "X", "测试", NONE, hooks=("nobody",))], registered)
    with pytest.raises(ValueError):
        hooks.merge(finance.HOOKS, finance.HOOKS)


def test_finance_books_by_type() -> None:
    assert finance.booking_types("payable") == ("purchase_receipt",)
    assert finance.booking_types("receivable") == ("sales_issue", "sales_return")


def test_checks_are_one_ordered_list() -> None:
    assert [c.name for c in checks.ORDER] == [
        "unit", "opening", "pending", "negative", "freeze", "expired", "magnitude", "backdating",
    ]
    assert [c.name for c in checks.ORDER if c.soft] == ["opening", "pending"]
    codes = [code for c in checks.ORDER for code in c.codes]
    assert len(codes) == len(set(codes))


def _check_names(codes: list[str]) -> list[str]:
    """The checks that reported these codes, consecutive repeats folded."""
    by_code = {code: c.name for c in checks.ORDER for code in c.codes}
    names: list[str] = []
    for code in codes:
        if not names or names[-1] != by_code[code]:
            names.append(by_code[code])
    return names


async def test_diagnosis_reports_failures_in_the_order_of_the_list(db, settings, monkeypatch) -> None:
    """One document failing every check: diagnosis lists them as ORDER does, also when ORDER is reordered."""
    async with db.session() as s:
        await seed(s)
        for q in (10, 12, 8):  # history for the magnitude guard
            await post(s, settings, "purchase_receipt", [line("CREAM", q, "kg")], warehouse="WH1")
        await post(s, settings, "purchase_receipt", [line("MILK", 24, "瓶", batch="OLD", expiry=date(2099, 1, 1))],
                   warehouse="WH1")
        (await s.scalar(select(Batch).where(Batch.code == "OLD"))).expiry = date(2024, 6, 1)
        await s.flush()
        loss = await create_document(s, settings, "loss", [line("CREAM", 1, "kg")], warehouse="WH1")
        await submit_document(s, settings, loss)  # pending lock
        await create_document(s, settings, "opening", [line("CREAM", 1, "kg")], warehouse="WH1")  # unapproved
        doc = await create_document(s, settings, "sales_issue", [
            line("SUGAR", 1, "袋"), line("CREAM", 5000, "kg"), line("MILK", 1, "瓶", batch="OLD"),
        ], warehouse="WH1")
        await submit_document(s, settings, doc)
        sugar = await s.scalar(select(Product).where(Product.sku == "SUGAR"))  # held: the posting path reads it
        sugar.purchase_factor = 20  # unit check
        cream = await s.scalar(select(Product).where(Product.sku == "CREAM"))
        wh1 = await s.scalar(select(Warehouse).where(Warehouse.code == "WH1"))
        await freeze(s, cream.id, wh1.id, "测试")
        past = datetime(2025, 1, 1, tzinfo=UTC)  # before the receipts: back-dated

        diag = await diagnose_document(s, settings, doc.number, now=past)
        assert _check_names([f.code for f in diag.failures]) == [c.name for c in checks.ORDER]

        monkeypatch.setattr(checks, "ORDER", tuple(reversed(checks.ORDER)))
        diag = await diagnose_document(s, settings, doc.number, now=past)
        assert _check_names([f.code for f in diag.failures]) == [c.name for c in checks.ORDER]  # now reversed


def _ledger_imports(tree: ast.Module, modules: set[str]) -> set[str]:
    """core.ledger modules a module imports, anywhere in it (also under TYPE_CHECKING or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.rsplit(".", 1)[-1] for a in node.names if a.name.startswith("core.ledger.")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "core.ledger":
                found |= {a.name for a in node.names if a.name in modules}
            elif node.module.startswith("core.ledger."):
                found.add(node.module.split(".")[2])
    return found


def test_core_ledger_has_no_import_circle() -> None:
    files = {p.stem: p for p in LEDGER.glob("*.py") if p.stem != "__init__"}
    graph = {name: _ledger_imports(ast.parse(p.read_text(encoding="utf-8")), set(files)) for name, p in files.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        assert state.get(name) != 1, "import circle: " + " → ".join([*path, name])
        state[name] = 1
        for dep in sorted(graph.get(name, ())):
            visit(dep, [*path, name])
        state[name] = 2

    for name in sorted(graph):
        visit(name, [])
    assert graph["checks"] >= {"plan"} and "posting" not in graph["checks"]
    assert "documents" not in graph["counts"]


def test_core_ledger_imports_only_at_module_level() -> None:
    for p in LEDGER.glob("*.py"):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)]
                assert not inner, f"{p.name}: import inside {fn.name}()"
