"""The jxcbot command line: init, stock (now and --at), doc, diagnose, exit codes and Chinese errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import run
from core.ledger.freeze import freeze
from core.models import Product, Warehouse
from core.storage import Database
from tests.factories import line, post, seed


@pytest.fixture
async def cli_db(tmp_path: Path, settings):
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    cfg = tmp_path / "jxcbot.toml"
    cfg.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    assert await run(["--config", str(cfg), "init"]) == 0
    db = Database(url)
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", "12.5", "kg")], warehouse="WH1")
        await post(s, settings, "purchase_receipt", [line("MILK", 2, "箱", batch="B1")], warehouse="WH1")
    yield str(cfg), db
    await db.dispose()


async def test_init_is_idempotent(cli_db, capsys):
    cfg, _ = cli_db
    assert await run(["--config", cfg, "init"]) == 0
    assert "数据库已就绪" in capsys.readouterr().out


async def test_stock_by_sku_barcode_and_name(cli_db, capsys):
    cfg, _ = cli_db
    assert await run(["--config", cfg, "stock", "CREAM"]) == 0
    out = capsys.readouterr().out
    assert "淡奶油" in out and "12.5" in out and "WH1 中央仓" in out
    assert await run(["--config", cfg, "stock", "6900000000028"]) == 0
    out = capsys.readouterr().out
    assert "48" in out and "B1" in out
    assert await run(["--config", cfg, "stock", "奶", "--warehouse", "WH1"]) == 0
    out = capsys.readouterr().out
    assert "淡奶油" in out and "牛奶" in out


async def test_stock_at_a_past_time_is_empty_and_bad_time_is_exit_2(cli_db, capsys):
    cfg, _ = cli_db
    assert await run(["--config", cfg, "stock", "CREAM", "--at", "2020-01-01"]) == 0
    assert "没有库存记录" in capsys.readouterr().out
    assert await run(["--config", cfg, "stock", "CREAM", "--at", "昨天"]) == 2
    assert "2026-11-01" in capsys.readouterr().err


async def test_unknown_product_and_warehouse_exit_2_with_fix(cli_db, capsys):
    cfg, _ = cli_db
    assert await run(["--config", cfg, "stock", "不存在的东西"]) == 2
    err = capsys.readouterr().err
    assert "没有找到" in err and "处理办法" in err
    assert await run(["--config", cfg, "stock", "CREAM", "-w", "NOPE"]) == 2
    err = capsys.readouterr().err
    assert "找不到仓库" in err and "WH1 中央仓" in err  # the fix lists the warehouses there are, as in chat


async def test_doc_shows_lines_and_missing_doc_is_exit_2(cli_db, capsys):
    cfg, db = cli_db
    from sqlalchemy import select

    from core.models import Document
    async with db.read() as s:
        number = await s.scalar(select(Document.number).where(Document.type == "purchase_receipt").limit(1))
    assert await run(["--config", cfg, "doc", number]) == 0
    out = capsys.readouterr().out
    assert number in out and "采购入库" in out and "已过账" in out
    assert await run(["--config", cfg, "doc", "RK19990101001"]) == 2
    assert "找不到单据" in capsys.readouterr().err


async def test_diagnose_document_lists_every_failing_check(cli_db, capsys, settings):
    cfg, db = cli_db
    from sqlalchemy import select

    from core.ledger.documents import create_document, submit_document
    async with db.session() as s:
        p = await s.scalar(select(Product).where(Product.sku == "CREAM"))
        w = await s.scalar(select(Warehouse).where(Warehouse.code == "WH1"))
        await freeze(s, p.id, w.id, "期初单位填错")
        doc = await create_document(s, settings, "sales_issue", [line("CREAM", 20, "kg")], warehouse="WH1")
        await submit_document(s, settings, doc)
        number = doc.number
    assert await run(["--config", cfg, "diagnose", number]) == 2
    out = capsys.readouterr().out
    assert "共 2 项未通过" in out and "未启用负库存" in out and "已冻结" in out and out.count("处理办法") == 2
    assert await run(["--config", cfg, "diagnose", "CREAM", "WH1"]) == 0
    out = capsys.readouterr().out
    assert "库存账" in out and "财务账" in out and "实物账" in out and "冻结事件日志" in out and "期初单位填错" in out


async def test_uninitialised_database_says_run_init(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "empty.db"}"\n', encoding="utf-8")
    assert await run(["--config", str(cfg), "stock", "x"]) == 2
    assert "jxcbot init" in capsys.readouterr().err


async def test_bad_config_names_key_and_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('timezone = "Asia/Shanghai"\n[database]\nurl = "mysql://x"\n', encoding="utf-8")
    assert await run(["--config", str(cfg), "stock", "x"]) == 2
    err = capsys.readouterr().err
    assert "[database] url" in err and "第 3 行" in err


@pytest.mark.parametrize(("argv", "says"), [
    (["template", "badkind", "x.xlsx"], "参数 kind 的取值「badkind」无效，可选：products, warehouses, users, opening"),
    (["stock"], "缺少参数：query"),
    (["stock", "奶油", "--bogus"], "无法识别的参数：--bogus"),
    (["replenish", "strategy", "原料", "weird"], "参数 strategy 的取值「weird」无效"),
    (["replenish", "backtest", "--w", "3"], "选项 --w 不明确，可能是：--warehouse, --weeks"),
])
async def test_usage_errors_are_chinese_with_the_fix(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        await run(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"错误：{says}" in err and "处理办法：运行 jxcbot" in err and "-h 查看用法" in err


@pytest.mark.parametrize("argv", [["-h"], ["replenish", "-h"], ["replenish", "promo", "add", "-h"]])
async def test_help_is_in_chinese(argv, capsys):
    with pytest.raises(SystemExit) as e:
        await run(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("用法：") and "显示本帮助并退出" in out
    assert "usage:" not in out and "options:" not in out and "positional arguments" not in out
