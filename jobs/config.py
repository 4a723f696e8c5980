"""[jobs.<name>]: a job's cron, channel and enabled switch, checked against the declared jobs; a bad one stops
start-up with a Chinese message naming the key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from core.config import ConfigError
from jobs.registry import JOBS, Job

_KEYS = ("cron", "channel", "enabled", "minutes")


@dataclass(frozen=True)
class Scheduled:
    """A job as configured: its trigger in the configured timezone, its channel, whether it runs."""

    job: Job
    cron: str
    trigger: CronTrigger
    channel: str
    enabled: bool


def trigger(cron: str, tz: ZoneInfo, key: str = "cron") -> CronTrigger:
    """A CronTrigger for five-field cron text, with the timezone on the trigger itself (APScheduler's from_crontab
    does not take the scheduler's)."""
    try:
        return CronTrigger.from_crontab(cron, timezone=tz)
    except (ValueError, TypeError) as e:
        raise ConfigError(key, f"不是有效的 cron 表达式「{cron}」（{e}）；格式：分 时 日 月 星期，例如 \"35 8 * * *\""
                          ) from None


def scheduled(raw: Mapping[str, Any], tz: ZoneInfo) -> list[Scheduled]:
    """Every declared job with its configuration (defaults where `[jobs.<name>]` says nothing)."""
    section = raw.get("jobs", {}) or {}
    if not isinstance(section, Mapping):
        raise ConfigError("[jobs]", "必须是一个表，例如 [jobs.risk_report] cron = \"35 8 * * *\"")
    for name, table in section.items():
        if name not in JOBS:
            raise ConfigError(f"[jobs.{name}]", f"未知的定时任务，可选：{'、'.join(sorted(JOBS))}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"[jobs.{name}]", "必须是一个表，例如 cron = \"35 8 * * *\"")
        for key in table:
            if key not in _KEYS:
                raise ConfigError(f"[jobs.{name}] {key}", f"未知的配置项，允许：{'、'.join(_KEYS)}")
    out = []
    for name, job in sorted(JOBS.items()):
        table = section.get(name, {})
        cron = table.get("cron", job.cron)
        if "minutes" in table:  # every N minutes (the integrity sweep's [jobs.integrity] minutes)
            n = table["minutes"]
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 59:
                raise ConfigError(f"[jobs.{name}] minutes", "必须是 1–59 之间的整数（每隔几分钟运行一次）")
            cron = f"*/{n} * * * *"
        channel = table.get("channel", job.channel)
        enabled = table.get("enabled", True)
        if not isinstance(cron, str):
            raise ConfigError(f"[jobs.{name}] cron", "必须是字符串，例如 \"35 8 * * *\"")
        if not isinstance(channel, str):
            raise ConfigError(f"[jobs.{name}] channel", "必须是 [channels] 中的频道名称")
        if not isinstance(enabled, bool):
            raise ConfigError(f"[jobs.{name}] enabled", "必须是 true 或 false")
        out.append(Scheduled(job, cron, trigger(cron, tz, f"[jobs.{name}] cron"), channel, enabled))
    return out
