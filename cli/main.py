"""The `jxcbot` command line: init, demo, serve, template, import, stock, doc, diagnose, replenish."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.exc import OperationalError, ProgrammingError

from cli import render
from core.config import ConfigError, Settings, load_config
from core.errors import DomainError
from core.ledger.doctypes import DOC_TYPES, STATUS_ZH
from core.storage import Database
from core.types import fq

EXIT_OK, EXIT_BAD_INPUT = 0, 2
KINDS = ("products", "warehouses", "users", "opening")


# argparse's usage errors, in Chinese (anything not listed is shown as argparse says it).
_USAGE_ERRORS = (
    (re.compile(r"argument (\S+): invalid choice: '(.*)' \(choose from (.*)\)"),
     lambda m: f"参数 {m[1]} 的取值「{m[2]}」无效，可选：" + m[3].replace("'", "")),
    (re.compile(r"argument (\S+): invalid (int|float) value: '(.*)'"),
     lambda m: f"参数 {m[1]} 需要{'整数' if m[2] == 'int' else '数字'}，收到「{m[3]}」"),
    (re.compile(r"argument (\S+): expected one argument"), lambda m: f"参数 {m[1]} 后面缺少取值"),
    (re.compile(r"the following arguments are required: (.*)"), lambda m: f"缺少参数：{m[1]}"),
    (re.compile(r"unrecognized arguments: (.*)"), lambda m: f"无法识别的参数：{m[1]}"),
    (re.compile(r"ambiguous option: (\S+) could match (.*)"), lambda m: f"选项 {m[1]} 不明确，可能是：{m[2]}，请写全"),
)


class _ChineseHelp(argparse.HelpFormatter):
    """Help whose usage line starts with 用法： instead of usage:."""

    def add_usage(self, usage: str | None, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, "用法：" if prefix is None else prefix)


class ChineseArgumentParser(argparse.ArgumentParser):
    """argparse in Chinese: usage errors say what is wrong and how to see the usage (exit code 2), and -h has
    Chinese headings. Subcommand parsers are of this class too (argparse makes them of the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _ChineseHelp)
        add_help = kwargs.pop("add_help", True)
        super().__init__(*args, add_help=False, **kwargs)
        self._positionals.title, self._optionals.title = "参数", "选项"
        if add_help:
            self.add_argument("-h", "--help", action="help", help="显示本帮助并退出")

    def error(self, message: str) -> NoReturn:
        for pattern, say in _USAGE_ERRORS:
            if (m := pattern.fullmatch(message)) is not None:
                message = say(m)
                break
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"错误：{message}\n处理办法：运行 {self.prog} -h 查看用法\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (help texts in Chinese)."""
    p = ChineseArgumentParser(prog="jxcbot", description="jxcbot 进销存机器人：账本命令行")
    p.add_argument("--config", metavar="FILE", help="配置文件（默认 ./jxcbot.toml，不存在则用内置默认值）")
    sub = p.add_subparsers(dest="command", required=True, metavar="命令")
    sub.add_parser("init", help="创建或升级数据库结构")
    demo = sub.add_parser("demo", help="用内置演示数据（烘焙连锁）新建演示库，打印库存概览并启动本地控制台")
    demo.add_argument("--db", default="jxcbot-demo.db", help="演示库 SQLite 文件（每次重建），默认 jxcbot-demo.db")
    demo.add_argument("--no-serve", action="store_true", help="只建演示库并打印概览，不启动服务")
    sub.add_parser("serve", help="启动机器人服务：企业微信/钉钉回调、本地控制台 /console、健康检查 /healthz")
    t = sub.add_parser("template", help="生成导入模板（.xlsx 或 .csv）")
    t.add_argument("kind", choices=KINDS)
    t.add_argument("out", type=Path)
    i = sub.add_parser("import", help="导入 Excel/CSV（整文件全部成功才写入）")
    i.add_argument("kind", choices=KINDS)
    i.add_argument("file", type=Path)
    i.add_argument("--submit-only", action="store_true", help="期初只提交待审核，不直接过账")
    s = sub.add_parser("stock", help="查库存：SKU、条码或名称片段")
    s.add_argument("query")
    s.add_argument("--warehouse", "-w")
    s.add_argument("--at", help="历史时点，如 2026-11-01 或 '2026-11-01 18:00'（按配置时区）")
    d = sub.add_parser("doc", help="查看单据")
    d.add_argument("number")
    g = sub.add_parser("diagnose", help="诊断：单据号，或 SKU + 仓库")
    g.add_argument("target", nargs="+", metavar="NUMBER | SKU WAREHOUSE")
    r = sub.add_parser("replenish", help="补货：采购建议（附原因）与历史回测")
    rsub = r.add_subparsers(dest="replenish_command", required=True, metavar="子命令")
    rb = rsub.add_parser("backtest", help="用本库已过账的销售历史回测：静态公式 vs 动态预测")
    rb.add_argument("--warehouse", "-w", help="只看一个仓库（编码或名称），默认全部仓库合计")
    rb.add_argument("--days", type=int, default=364, help="历史天数，默认 364")
    rb.add_argument("--weeks", type=int, default=26, help="滚动回测的周数，默认 26")
    rs = rsub.add_parser("suggest", help="采购建议，逐个说明建议数量的由来")
    rs.add_argument("--warehouse", "-w", help="只看一个仓库（编码或名称），默认全部仓库合计")
    rs.add_argument("--all", action="store_true", help="也列出无需采购的商品")
    ra = rsub.add_parser("anchor", help="设置核心商品某月的人工预测锚点（必须写原因，每次修改都记录）")
    ra.add_argument("sku")
    ra.add_argument("month", help="月份，如 2026-12")
    ra.add_argument("qty", help="该月预计需求总量（库存单位）")
    ra.add_argument("--reason", required=True, help="依据，例如：客户已确认团购 300 盒")
    ra.add_argument("--by", required=True, help="操作人用户名")
    ra.add_argument("--weight", help="权重上限（0–0.5，默认 0.5）")
    rf = rsub.add_parser("fva", help="某月人工锚点的预测增值（FVA）：统计预测 vs 混合预测 vs 实际")
    rf.add_argument("month", help="月份，如 2026-10")
    rt = rsub.add_parser("strategy", help="设置品类补货策略：fixed 固定安全库存 / static 静态公式 / dynamic 动态预测")
    rt.add_argument("category")
    rt.add_argument("strategy", choices=("fixed", "static", "dynamic"))
    rt.add_argument("--service-level", default="0.95", help="服务水平，默认 0.95")
    rt.add_argument("--fixed-qty", help="fixed 策略的安全库存（库存单位）")
    rt.add_argument("--review-days", type=int, default=7, help="补货周期天数，默认 7")
    rt.add_argument("--by", help="操作人用户名")
    rp = rsub.add_parser("promo", help="促销日历：登记、查看、删除商品促销（历史促销学习系数，计划促销提高预测）")
    psub = rp.add_subparsers(dest="promo_command", required=True, metavar="操作")
    pa = psub.add_parser("add", help="登记一个商品的促销（开始、结束日期均含当天，最长 60 天，必须写原因）")
    pa.add_argument("sku")
    pa.add_argument("start", help="开始日期，如 2026-12-10")
    pa.add_argument("end", help="结束日期（含当天），如 2026-12-12")
    pa.add_argument("--reason", required=True, help="促销内容，例如：双十二满 100 减 20")
    pa.add_argument("--by", required=True, help="操作人用户名")
    pl = psub.add_parser("list", help="列出促销（按开始日期）")
    pl.add_argument("--from", dest="since", metavar="DATE", help="只列在该日期当天或之后仍在进行的促销，如 2026-12-01")
    pr = psub.add_parser("remove", help="按编号删除一个促销")
    pr.add_argument("id", help="促销编号（见 promo list）")
    return p


def parse_at(text: str, settings: Settings) -> datetime:
    """A datetime from the command line; naive values are in the configured timezone."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DomainError("BAD_DATETIME", f"时间「{text}」无法识别", "请写成 2026-11-01 或 2026-11-01 18:00") from None
    return at.replace(tzinfo=settings.timezone) if at.tzinfo is None else at


def _make_parent(path: str) -> None:
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


async def _init(settings: Settings, url: str | None = None) -> None:
    from core.storage.migrate import upgrade

    url = url or settings.database_url
    if url.startswith("sqlite") and ":///" in url:
        await asyncio.to_thread(_make_parent, url.split(":///", 1)[1])
    await upgrade(url)


async def cmd_init(settings: Settings, _args: argparse.Namespace) -> int:
    """Create or upgrade the schema."""
    await _init(settings)
    print("数据库已就绪（已升级到最新结构）。")
    return EXIT_OK


def _fresh_file(path: Path) -> Path:
    """Remove an SQLite file with its WAL companions; returns the absolute path."""
    path = path.resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Build a fresh demo database and print the stock overview."""
    from dataclasses import replace

    from core.importer import load_demo
    from core.ledger.overview import stock_overview

    path = await asyncio.to_thread(_fresh_file, Path(args.db))
    url = f"sqlite+aiosqlite:///{path}"
    demo_settings = replace(settings, database_url=url, server_console=True)  # the demo is tried in the console
    await _init(demo_settings)
    db = Database(url)
    try:
        print("正在载入演示数据（烘焙连锁：中央仓 + 12 家门店）…", file=sys.stderr)
        await db.write(lambda s: load_demo(s, demo_settings))
        async with db.read() as s:
            print(render.overview(await stock_overview(s)))
    finally:
        await db.dispose()
    print(f"\n演示库：{path}\n试试查询：JXCBOT_DATABASE_URL={url} jxcbot stock 奶油")
    if args.no_serve:
        return EXIT_OK
    return await serve(demo_settings, Database(url))


async def cmd_serve(settings: Settings, _args: argparse.Namespace, db: Database) -> int:
    """Run the bot server until Ctrl-C / SIGTERM."""
    return await serve(settings, db)


async def serve(settings: Settings, db: Database) -> int:
    """Start the aiohttp server, print the console URL, stop gracefully on SIGINT/SIGTERM."""
    import signal

    from aiohttp import web

    from bot.server import build_app

    runner = web.AppRunner(build_app(settings, db), handle_signals=False)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, settings.server_host, settings.server_port,
                              reuse_port=settings.server_reuse_port or None).start()
        except OSError as e:
            raise DomainError("PORT_BUSY", f"无法监听 {settings.server_host}:{settings.server_port}（{e.strerror}）",
                              "端口可能已被占用：换一个端口（[server] port 或 JXCBOT_SERVER_PORT）后重试") from None
        where = f"http://{settings.server_host}:{settings.server_port}"
        if settings.console_enabled:
            print(f"jxcbot 已启动。本地控制台：{where}/console（按 Ctrl-C 停止）", flush=True)
        else:
            why = ("已按配置关闭（[server] console = false）" if settings.server_console is False else
                   "默认关闭：已配置企业微信/钉钉，而控制台不验证身份，能访问本端口的人都能冒用用户身份；"
                   "仅在可信网络中需要时设置 [server] console = true")
            print(f"jxcbot 已启动，监听 {where}（按 Ctrl-C 停止）。本地控制台{why}。", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("正在停止：等待处理中的消息完成…", file=sys.stderr)
    finally:
        await runner.cleanup()
        await db.dispose()
    return EXIT_OK


async def cmd_template(_settings: Settings, args: argparse.Namespace) -> int:
    """Write an import template."""
    from core.importer import write_template

    await asyncio.to_thread(write_template, args.kind, args.out)
    print(f"已生成导入模板：{args.out}")
    return EXIT_OK


async def cmd_import(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Import a file all-or-nothing, printing progress and every bad row."""
    from core.importer import ImportFailed, import_file

    if not args.file.exists():
        raise DomainError("NO_FILE", f"找不到文件 {args.file}", "请检查路径和文件名")

    def progress(done: int, total: int) -> None:
        print(f"\r处理中 {done}/{total} 行", end="", file=sys.stderr, flush=True)

    try:
        report = await db.write(
            lambda s: import_file(s, settings, args.kind, args.file, post=not args.submit_only, progress=progress)
        )
    except ImportFailed as e:
        print(file=sys.stderr)
        print(f"导入失败：{len(e.errors)} 处错误，未写入任何数据。请修改后重新导入整个文件。")
        for err in e.errors:
            print(f"  第 {err.row} 行 [{err.column}]：{err.message_zh} → {err.fix_zh}")
        return EXIT_BAD_INPUT
    print(file=sys.stderr)
    msg = f"导入完成：{report.rows} 行，新增 {report.created}，更新 {report.updated}。"
    if report.documents:
        msg += f" 期初单：{'、'.join(report.documents)}"
    print(msg)
    return EXIT_OK


async def cmd_stock(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Stock of matching products per warehouse and batch."""
    from core.ledger.stock import stock_lookup

    at = parse_at(args.at, settings) if args.at else None
    async with db.read(snapshot=at is not None) as s:  # current stock is one statement
        products, levels = await stock_lookup(s, args.query, args.warehouse, at)
    if not products:
        raise DomainError("NO_MATCH", f"没有找到与「{args.query}」匹配的商品", "请换个关键词，或用 SKU/条码查询")
    title = f"库存查询「{args.query}」" + (f" 截至 {at:%Y-%m-%d %H:%M}" if at else "")
    print(render.stock_report(levels, title))
    return EXIT_OK


async def cmd_doc(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Show one document with its lines."""
    from sqlalchemy import select

    from core.ledger.documents import get_document
    from core.models import Product, Warehouse

    async with db.read() as s:
        doc = await get_document(s, args.number)
        pids = {ln.product_id for ln in doc.lines}
        products = {p.id: p for p in await s.scalars(select(Product).where(Product.id.in_(pids)))}
        whs = {w.id: w.code for w in await s.scalars(select(Warehouse))}
    tz = settings.timezone
    print(f"{doc.number}  {DOC_TYPES[doc.type].name_zh}  状态：{STATUS_ZH[doc.status]}"
          + ("  已退货" if doc.returned else "") + ("  ⚠ 待复核" if doc.needs_review else ""))
    print(f"创建 {doc.created_at.astimezone(tz):%Y-%m-%d %H:%M}"
          + (f"  过账 {doc.posted_at.astimezone(tz):%Y-%m-%d %H:%M}" if doc.posted_at else ""))
    rows = [[str(ln.line_no), products[ln.product_id].sku, products[ln.product_id].name, whs[ln.warehouse_id],
             ln.batch_code or "—", f"{fq(ln.qty)}{ln.unit}", f"{fq(ln.stock_qty)}{products[ln.product_id].stock_unit}"]
            for ln in doc.lines]
    print(render.table(["行", "SKU", "名称", "仓库", "批次", "数量", "折合库存单位"], rows))
    if doc.review_notes:
        print("复核说明：\n" + doc.review_notes)
    if doc.reject_reason:
        print(f"驳回原因：{doc.reject_reason}")
    return EXIT_OK


async def cmd_diagnose(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Diagnose a document (dry run, rolled back) or a product+warehouse."""
    from core.ledger.diagnose import diagnose_document, diagnose_pair

    if len(args.target) == 1:
        async with db.session() as s:  # the dry run locks like a posting; nothing is written
            diag = await diagnose_document(s, settings, args.target[0])
            await s.rollback()
        print(render.document_diagnosis(diag))
        return EXIT_OK if not diag.failures else EXIT_BAD_INPUT
    if len(args.target) == 2:
        async with db.read() as s:
            print(render.pair_diagnosis(await diagnose_pair(s, *args.target), settings.timezone))
        return EXIT_OK
    raise DomainError("BAD_ARGS", "诊断需要一个单据号，或 SKU 和仓库两项", "例如：jxcbot diagnose RK20261125001 或 "
                      "jxcbot diagnose CREAM CW")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


async def cmd_replenish(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Purchase suggestions with their reasons, or the back-test on the posted history."""
    from core.replenish.history import LT_MIN_OBSERVATIONS
    from core.replenish.suggest import backtest_history, suggest
    from core.replenish.why import STRATEGY_ZH, why_zh

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
    from core.replenish.anchors_db import fva_report, set_anchor
    from core.replenish.strategies_db import set_strategy
    from core.replenish.why import STRATEGY_ZH

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
    from core.replenish.promotions_db import add_promotion, list_promotions, remove_promotion

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


async def run(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run one command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_config(args.config)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    handlers = {"init": cmd_init, "demo": cmd_demo, "template": cmd_template}
    try:
        if args.command in handlers:
            return await handlers[args.command](settings, args)
        db = Database(settings.database_url)
        try:
            commands = {"import": cmd_import, "stock": cmd_stock, "doc": cmd_doc, "diagnose": cmd_diagnose,
                        "serve": cmd_serve, "replenish": cmd_replenish}
            return await commands[args.command](settings, args, db)
        finally:
            await db.dispose()
    except DomainError as e:
        print(render.error_text(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConfigError as e:  # a [wecom]/[dingtalk]/[outbox] section read when the server starts
        print(str(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OperationalError, ProgrammingError) as e:
        if "no such table" in str(e) or "does not exist" in str(e):
            print("错误：数据库尚未初始化。\n处理办法：先运行 jxcbot init", file=sys.stderr)
        else:
            print(f"错误：无法访问数据库（{type(e.orig).__name__}）。\n处理办法：检查配置 [database] url "
                  "或环境变量 JXCBOT_DATABASE_URL，确认数据库已启动", file=sys.stderr)
        return EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    return asyncio.run(run(argv))
