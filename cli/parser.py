"""Argument parsing in Chinese: the parser of every command, usage errors that say how to fix them, exit codes."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from core.config import Settings
from core.errors import DomainError

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
    sub.add_parser("jobs", help="列出定时任务：时间表、频道、下次运行、上次运行及结果")
    jr = sub.add_parser("job", help="定时任务：job run <名称> [--period 周期] 立即运行一次（同一周期只运行一次）")
    jrsub = jr.add_subparsers(dest="job_command", required=True, metavar="子命令")
    run = jrsub.add_parser("run", help="立即运行一个定时任务")
    run.add_argument("name", metavar="名称")
    run.add_argument("--period", help="业务周期，如 2026-12-07、2026-12、2026-W49（默认：最近一次应运行的周期）")
    w = sub.add_parser("wecom", help="企业微信：安装应用菜单（扫码、待办、帮助）")
    wsub = w.add_subparsers(dest="wecom_command", required=True, metavar="子命令")
    wsub.add_parser("menu", help="通过 menu/create 为自建应用安装菜单：扫码（扫商品条码和批次）、待办、帮助")
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


def self_command() -> str:
    """How to run jxcbot again from a shell, for the hints the CLI prints: `jxcbot` when that is on PATH and is this
    program, else the full path of the running script (a virtualenv's bin/ is often not on PATH), else this
    interpreter with `-m cli.main` (started as a module)."""
    script = Path(sys.argv[0])
    if script.stem != "jxcbot":
        return f"{shlex.quote(sys.executable)} -m cli.main"
    found = shutil.which("jxcbot")
    if found is not None and Path(found).resolve() == script.resolve():
        return "jxcbot"
    return shlex.quote(str(script.absolute()))


def parse_at(text: str, settings: Settings) -> datetime:
    """A datetime from the command line; naive values are in the configured timezone."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DomainError("BAD_DATETIME", f"时间「{text}」无法识别", "请写成 2026-11-01 或 2026-11-01 18:00") from None
    return at.replace(tzinfo=settings.timezone) if at.tzinfo is None else at
