"""The jxcbot command line: init, stock (now and --at), doc, diagnose, exit codes and Chinese errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import missing_sqlite_file, run
from cli.parser import self_command
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


async def test_uninitialised_database_says_run_init_and_creates_no_file(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "empty.db"}"\n', encoding="utf-8")
    for argv in (["stock", "x"], ["doc", "RK1"], ["diagnose", "CREAM", "WH1"], ["serve"]):
        assert await run(["--config", str(cfg), *argv]) == 2
        err = capsys.readouterr().err
        assert "尚未初始化" in err and str(tmp_path / "empty.db") in err and f"{self_command()} init" in err
        assert not (tmp_path / "empty.db").exists()  # connecting would have created it
    assert await run(["--config", str(cfg), "init"]) == 0  # as the hint says
    assert (tmp_path / "empty.db").exists()
    assert await run(["--config", str(cfg), "stock", "x"]) == 2
    assert "没有找到" in capsys.readouterr().err  # initialised now: an ordinary answer


async def test_an_empty_database_file_says_run_init(tmp_path, capsys):
    (tmp_path / "empty.db").touch()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "empty.db"}"\n', encoding="utf-8")
    assert await run(["--config", str(cfg), "stock", "x"]) == 2
    assert f"{self_command()} init" in capsys.readouterr().err


@pytest.mark.parametrize(("url", "missing"), [
    ("sqlite+aiosqlite:///{tmp}/none.db", "{tmp}/none.db"),
    ("sqlite+aiosqlite:///{tmp}/here.db", None),
    ("sqlite+aiosqlite://", None),  # in memory
    ("sqlite+aiosqlite:///:memory:", None),
    ("postgresql+asyncpg://u:p@localhost/jxc", None),
])
def test_missing_sqlite_file(tmp_path, url, missing):
    (tmp_path / "here.db").touch()
    found = missing_sqlite_file(url.format(tmp=tmp_path))
    assert found == (Path(missing.format(tmp=tmp_path)) if missing else None)


async def test_diagnose_a_posted_document_says_its_status_once(cli_db, capsys):
    cfg, db = cli_db
    from sqlalchemy import select

    from core.models import Document
    async with db.read() as s:
        number = await s.scalar(select(Document.number).where(Document.status == "posted").limit(1))
    assert await run(["--config", cfg, "diagnose", number]) == 0
    out = capsys.readouterr().out
    assert "该单据已过账，无需过账检查" in out and "已已" not in out


@pytest.mark.parametrize(("sku", "warehouse", "says", "not_says"), [
    ("CREAM", "XX", "错误：找不到仓库「XX」\n", "商品"),
    ("NOPE", "WH1", "错误：找不到商品「NOPE」\n", "仓库"),
    ("NOPE", "XX", "错误：找不到商品「NOPE」和仓库「XX」\n", None),
])
async def test_diagnose_names_the_unknown_product_or_warehouse(cli_db, capsys, sku, warehouse, says, not_says):
    cfg, _ = cli_db
    assert await run(["--config", cfg, "diagnose", sku, warehouse]) == 2
    err = capsys.readouterr().err
    assert says in err, err
    error_line, fix = err.split("\n", 1)
    assert not_says is None or not_says not in error_line
    assert ("S01、S02、WH1" in fix) == (warehouse == "XX")  # the known warehouse codes
    assert ("SKU" in fix) == (sku == "NOPE")


def test_the_hint_names_a_jxcbot_that_runs(tmp_path, monkeypatch):
    """`jxcbot` only when that is on PATH and is this program; else the script's full path; else python -m."""
    script = tmp_path / "venv" / "bin" / "jxcbot"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["venv/bin/jxcbot", "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert self_command() == str(script)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert self_command() == "jxcbot"
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "cli" / "main.py")])
    assert self_command() == f"{sys.executable} -m cli.main"


async def test_the_demo_hint_works_as_printed_without_the_venv_on_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert await run(["demo", "--db", str(tmp_path / "demo.db"), "--no-serve"]) == 0
    hint = capsys.readouterr().out.rsplit("试试查询：", 1)[1].strip()
    assert hint.endswith(" stock 奶油") and self_command() in hint  # this process: python -m cli.main
    env = {k: v for k, v in os.environ.items() if not k.startswith("JXCBOT_")} | {"PATH": "/usr/bin:/bin"}
    done = await asyncio.to_thread(subprocess.run, ["sh", "-c", hint], capture_output=True, text=True, env=env,
                                   cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "库存查询「奶油」" in done.stdout and "RM-" in done.stdout


async def test_the_installed_script_prints_its_own_path_in_the_demo_hint(tmp_path):
    script = Path(sys.executable).with_name("jxcbot")
    if not script.exists():
        pytest.skip("the jxcbot console script is not installed next to this interpreter")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JXCBOT_")} | {"PATH": "/usr/bin:/bin"}
    done = await asyncio.to_thread(subprocess.run, [str(script), "demo", "--db", "demo.db", "--no-serve"],
                                   capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    hint = done.stdout.rsplit("试试查询：", 1)[1].strip()
    assert f" {script} stock 奶油" in hint
    again = await asyncio.to_thread(subprocess.run, ["sh", "-c", hint], capture_output=True, text=True, env=env,
                                    cwd=tmp_path, timeout=120)
    assert again.returncode == 0 and "库存查询「奶油」" in again.stdout, again.stderr


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
