"""Configuration: a TOML file, environment overrides (JXCBOT_<SECTION>_<KEY>) and validated Settings."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.ledger.doctypes import DOC_TYPES, ApprovalPolicy
from core.messaging.targets import Target, parse_target
from core.models.masters import ROLES

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "VALIDATED_DOC_TYPES",
    "VALIDATION_MODES",
    "ConfigError",
    "Settings",
    "load_config",
]

DEFAULT_CONFIG_FILE = "jxcbot.toml"
ENV_PREFIX = "JXCBOT_"

# Env "sections" that are not configuration (JXCBOT_TEST_DATABASE_URL belongs to the test-suite).
_IGNORED_ENV_SECTIONS = frozenset({"test"})

VALIDATION_MODES = ("strict", "loose")

# Document types whose posting checks can be strict (block) or loose (warn); mirrors core.ledger.doctypes.DOC_TYPES.
VALIDATED_DOC_TYPES = (
    "opening",
    "purchase_receipt",
    "sales_issue",
    "sales_return",
    "transfer",
    "loss",
    "adjustment",
    "other_issue",
    "borrow",
    "borrow_return",
    "stock_count",
    "discrepancy",
    "purchase_request",
    "purchase_order",
    "sales_order",
)

_DB_URL_PREFIXES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")

# Top-level scalar keys and the keys allowed in each validated section.
_TOP_LEVEL_KEYS = frozenset({"timezone"})
CHANNEL_PLATFORMS = ("wecom", "dingtalk", "console")
CHANNEL_KINDS = ("robot", "group", "user")
_KNOWN_SECTIONS: dict[str, frozenset[str]] = {
    "database": frozenset({"url"}),
    "server": frozenset({"host", "port", "reuse_port", "console"}),
    "ledger": frozenset({"magnitude_factor", "strategic_reserve_rate", "allow_backdating"}),
    "validation": frozenset(VALIDATED_DOC_TYPES),
    "borrow": frozenset({"default_days"}),
    "purchase": frozenset({"over_receipt_rate"}),
    "scan": frozenset({"required"}),
    "health": frozenset({"weights", "threshold", "discrepancy_hours"}),
    # The platform sections (read by bot/platforms.py): their key names are checked here, with the file line.
    "wecom": frozenset({"corp_id", "agent_id", "secret", "token", "encoding_aes_key", "api_base", "robots",
                        "mode", "bot_id", "ws_url"}),
    "dingtalk": frozenset({"app_key", "app_secret", "robot_code", "card_template_id", "card_callback_token",
                           "link_secret", "card_callback_route_key", "public_url", "api_base", "oapi_base", "mode",
                           "robots"}),
}
_DINGTALK_ROBOT_KEYS = frozenset({"access_token", "secret", "keyword"})
# [health] weights: the monthly health report's metrics and their default weights (points out of 100).
HEALTH_WEIGHTS = {"closure": 30, "scan": 30, "discrepancy": 25, "borrow": 15}
HEALTH_METRICS_ZH = {"closure": "单据闭环率", "scan": "扫码执行率", "discrepancy": "差异闭环时长",
                     "borrow": "借货归还率"}
# Document types whose stock-out lines must be entered by scanning (the seed's 出库必扫商品条码+批次号).
SCAN_DEFAULT = ("borrow", "sales_issue", "other_issue")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class ConfigError(Exception):
    """A configuration value is missing, malformed or out of range; the message names the key and where it came from."""

    def __init__(
        self,
        key: str,
        problem: str,
        *,
        line: int | None = None,
        path: str | None = None,
        from_env: bool = False,
    ) -> None:
        self.key = key
        self.problem = problem
        self.line = line
        self.path = path
        self.from_env = from_env
        super().__init__(self._render())

    @property
    def location(self) -> str:
        """Where the bad value came from, in Chinese ('' when unknown)."""
        if self.from_env and self.path:
            return f"环境变量 {self.path}"
        if self.path and self.line is not None:
            return f"{self.path} 第 {self.line} 行"
        if self.path:
            return self.path
        if self.line is not None:
            return f"第 {self.line} 行"
        return ""

    def _render(self) -> str:
        head = "配置错误："
        if self.key:
            head += self.key
            if self.location:
                head += f"（{self.location}）"
        elif self.location:
            head += self.location
        return f"{head}：{self.problem}"

    def __str__(self) -> str:
        return self._render()


@dataclass(frozen=True)
class Settings:
    """Validated, read-only application settings; `raw` keeps the whole merged document for other sections."""

    database_url: str = field(default="sqlite+aiosqlite:///jxcbot.db", repr=False)  # may carry a password
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    validation: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(VALIDATED_DOC_TYPES, "strict"))
    )
    magnitude_factor: Decimal = Decimal(100)
    strategic_reserve_rate: Decimal = Decimal("0.15")
    allow_backdating: bool = False
    server_host: str = "127.0.0.1"
    server_port: int = 8080
    server_reuse_port: bool = False  # several `jxcbot serve` processes share the port (PostgreSQL only)
    # The unauthenticated /console: None = on unless WeCom or DingTalk is configured (a server reachable by a
    # platform is reachable by others, and the console lets anyone speak as any user).
    server_console: bool | None = None
    # [channels]: named group destinations (robots, conversations) that handlers and jobs post to by name.
    channels: Mapping[str, tuple[Target, ...]] = field(default_factory=lambda: MappingProxyType({}))
    # [borrow] default_days: a borrow slip's return date when the slip names none.
    borrow_default_days: int = 14
    # [purchase] over_receipt_rate: how much more than ordered a purchase order may receive (0.05 = 5%).
    over_receipt_rate: Decimal = Decimal(0)
    # [scan] required: document types whose lines must be entered by scanning barcode and batch.
    scan_required: frozenset[str] = frozenset(SCAN_DEFAULT)
    # [approvals] remind_after_hours: a sign-off pending longer than this is reminded to its approvers daily.
    approval_remind_hours: int = 24
    # [health]: the monthly health report's weights per metric (summing to 100), the score under which a department
    # owes an improvement plan, and the discrepancy closure time (p90, hours) that still earns full points.
    health_weights: Mapping[str, int] = field(default_factory=lambda: MappingProxyType(dict(HEALTH_WEIGHTS)))
    health_threshold: int = 85
    health_discrepancy_hours: int = 48
    # [approvals.<type>]: who signs a document type, replacing the type's declared policy.
    approvals: Mapping[str, ApprovalPolicy] = field(default_factory=lambda: MappingProxyType({}))
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)  # may carry secrets

    @property
    def console_enabled(self) -> bool:
        """Whether the server mounts /console ([server] console, by default on only without a platform)."""
        if self.server_console is not None:
            return self.server_console
        return "wecom" not in self.raw and "dingtalk" not in self.raw

    def validation_mode(self, doc_type: str) -> str:
        """'strict' or 'loose' for a document type code; KeyError for an unknown type."""
        try:
            return self.validation[doc_type]
        except KeyError:
            raise KeyError(f"unknown document type for validation mode: {doc_type!r}") from None


def _key_name(section: str | None, key: str) -> str:
    return f"[{section}] {key}" if section else key


def _split_dotted(text: str) -> list[str]:
    """Split a (possibly quoted) dotted TOML key into its parts; good enough for locating lines."""
    return [part.strip().strip("\"'").strip() for part in text.split(".")]


_HEADER_RE = re.compile(r"^\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEYLINE_RE = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


class _Source:
    """The config file text (if any) and which keys came from the environment, to locate errors."""

    def __init__(self, path: str | None, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.env_origin: dict[tuple[str | None, str], str] = {}

    def find_line(self, section: str | None, key: str | None) -> int | None:
        """1-based line of `key =` inside `[section]` (of the header when key is None); None when not found.

        Falls back to the line of an enclosing inline table (`database = { url = ... }`) or of the `[section]` header.
        """
        wanted = ([section] if section else []) + ([key] if key else [])
        current: list[str] = []
        fallback: int | None = None
        for number, line in enumerate(self.lines, start=1):
            header = _HEADER_RE.match(line)
            if header:
                current = _split_dotted(header.group(1))
                if current == wanted:
                    return number
                if fallback is None and current == wanted[:-1] and len(wanted) > 1:
                    fallback = number
                continue
            match = _KEYLINE_RE.match(line)
            if not match:
                continue
            full = current + _split_dotted(match.group(1))
            if full == wanted:
                return number
            inline_table = len(current) < len(full) < len(wanted) and wanted[: len(full)] == full
            if fallback is None and inline_table:
                fallback = number
        return fallback

    def error(self, section: str | None, key: str, problem: str) -> ConfigError:
        """A ConfigError located at the env var that set the key, or at its line in the file."""
        name = _key_name(section, key)
        env_var = self.env_origin.get((section, key))
        if env_var is not None:
            return ConfigError(name, problem, path=env_var, from_env=True)
        return ConfigError(name, problem, line=self.find_line(section, key), path=self.path)


def _read_file(path: str | os.PathLike[str] | None) -> tuple[str | None, str]:
    if path is None:
        default = Path(DEFAULT_CONFIG_FILE)
        if not default.is_file():
            return None, ""
        path = default
    shown = os.fspath(path)
    p = Path(path)
    if not p.exists():
        raise ConfigError("--config", "配置文件不存在，请检查路径", path=shown)
    if not p.is_file():
        raise ConfigError("--config", "不是一个文件，请指定 .toml 配置文件", path=shown)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError("--config", f"无法读取配置文件（{exc.strerror or type(exc).__name__}）", path=shown) from None
    try:
        return shown, data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError("", "配置文件必须是 UTF-8 编码", path=shown) from None


_TOML_POS_RE = re.compile(r"\s*\(at (?:line (\d+), column \d+|end of document)\)\s*$")


def _parse_toml(shown: str | None, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POS_RE.search(message)
        line: int | None = None
        if match:
            message = message[: match.start()]
            line = int(match.group(1)) if match.group(1) else max(1, len(text.splitlines()))
        raise ConfigError("", f"TOML 语法错误（{message}）", line=line, path=shown) from None


def _env_target(name: str) -> tuple[str | None, str] | None:
    """(section, key) that an environment variable overrides, or None when it is not a config override."""
    if not name.startswith(ENV_PREFIX):
        return None
    rest = name[len(ENV_PREFIX) :]
    if rest.lower() in _TOP_LEVEL_KEYS:
        return None, rest.lower()
    section, sep, key = rest.partition("_")
    if not sep or not section or not key:
        return None  # e.g. JXCBOT_CONFIG: not a <SECTION>_<KEY> override
    section = section.lower()
    if section in _IGNORED_ENV_SECTIONS:
        return None
    return section, key.lower()


def _apply_env(doc: dict[str, Any], env: Mapping[str, str], source: _Source) -> None:
    for name in sorted(env):
        target = _env_target(name)
        if target is None:
            continue
        section, key = target
        value = env[name]
        if section is None:
            doc[key] = value
        else:
            table = doc.setdefault(section, {})
            if not isinstance(table, dict):
                raise source.error(None, section, "必须是一个表（[section]），不能同时用环境变量覆盖其中的键")
            table[key] = value
        source.env_origin[(section, key)] = name


def _check_structure(doc: Mapping[str, Any], source: _Source) -> None:
    for name, value in doc.items():
        if name in _TOP_LEVEL_KEYS:
            continue
        if name in _KNOWN_SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"[{name}]",
                    "必须是一个表（[section]）",
                    line=source.find_line(name, None),
                    path=source.path,
                )
            allowed = _KNOWN_SECTIONS[name]
            for key in value:
                if key not in allowed:
                    raise source.error(name, key, f"未知的配置项，[{name}] 允许的键：{'、'.join(sorted(allowed))}")
            robots = value.get("robots") if name == "dingtalk" else None
            for robot, keys in (robots.items() if isinstance(robots, Mapping) else ()):
                for key in (keys if isinstance(keys, Mapping) else ()):
                    if key not in _DINGTALK_ROBOT_KEYS:
                        raise source.error(f"dingtalk.robots.{robot}", key, "未知的配置项，群机器人允许的键："
                                           + "、".join(sorted(_DINGTALK_ROBOT_KEYS)))
        elif not isinstance(value, dict):
            raise source.error(None, name, "未知的顶层配置项（顶层只允许 timezone，其它设置请放在对应的 [section] 下）")


def _as_str(value: Any, section: str | None, key: str, source: _Source) -> str:
    if not isinstance(value, str):
        raise source.error(section, key, "必须是字符串")
    return value


def _as_int(value: Any, section: str | None, key: str, source: _Source, lo: int, hi: int) -> int:
    problem = f"必须是 {lo}–{hi} 之间的整数"
    if isinstance(value, bool):
        raise source.error(section, key, problem)
    if isinstance(value, str) and (section, key) in source.env_origin:
        try:
            value = int(value.strip())
        except ValueError:
            raise source.error(section, key, problem) from None
    if not isinstance(value, int) or not lo <= value <= hi:
        raise source.error(section, key, problem)
    return value


def _as_bool(value: Any, section: str | None, key: str, source: _Source) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and (section, key) in source.env_origin:
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise source.error(section, key, "必须是布尔值 true 或 false")


def _as_decimal(value: Any, section: str | None, key: str, source: _Source, problem: str) -> Decimal:
    if isinstance(value, bool):
        raise source.error(section, key, problem)
    if isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise source.error(section, key, problem) from None
        if number.is_finite():
            return number
    raise source.error(section, key, problem)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _timezone(doc: dict[str, Any], source: _Source, defaults: Settings) -> dict[str, Any]:
    tz_name = doc.get("timezone")
    if tz_name is None:
        return {"timezone": defaults.timezone}
    tz_name = _as_str(tz_name, None, "timezone", source).strip()
    try:
        timezone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise source.error(None, "timezone", "不是有效的 IANA 时区名称（例如 Asia/Shanghai）") from None
    doc["timezone"] = tz_name
    return {"timezone": timezone}


def _database(doc: dict[str, Any], source: _Source, defaults: Settings) -> dict[str, Any]:
    database = doc.get("database", {})
    if "url" not in database:
        return {"database_url": defaults.database_url}
    url = _as_str(database["url"], "database", "url", source).strip()
    if not url.startswith(_DB_URL_PREFIXES):
        raise source.error("database", "url", f"必须以 {' 或 '.join(_DB_URL_PREFIXES)} 开头")
    database["url"] = url
    return {"database_url": url}


def _server(doc: dict[str, Any], source: _Source, defaults: Settings) -> dict[str, Any]:
    server = doc.get("server", {})
    out: dict[str, Any] = {"server_host": defaults.server_host, "server_port": defaults.server_port,
                           "server_reuse_port": False, "server_console": None}
    if "host" in server:
        out["server_host"] = server["host"] = _as_str(server["host"], "server", "host", source).strip()
        if not out["server_host"]:
            raise source.error("server", "host", "不能为空")
    if "port" in server:
        out["server_port"] = server["port"] = _as_int(server["port"], "server", "port", source, 1, 65535)
    if "reuse_port" in server:
        out["server_reuse_port"] = _as_bool(server["reuse_port"], "server", "reuse_port", source)
    if "console" in server:
        out["server_console"] = _as_bool(server["console"], "server", "console", source)
    return out


def _ledger(doc: dict[str, Any], source: _Source, defaults: Settings) -> dict[str, Any]:
    ledger = doc.get("ledger", {})
    out: dict[str, Any] = {"magnitude_factor": defaults.magnitude_factor,
                           "strategic_reserve_rate": defaults.strategic_reserve_rate,
                           "allow_backdating": defaults.allow_backdating}
    if "magnitude_factor" in ledger:
        problem = "必须是大于 1 的数字"
        factor = _as_decimal(ledger["magnitude_factor"], "ledger", "magnitude_factor", source, problem)
        if factor <= 1:
            raise source.error("ledger", "magnitude_factor", problem)
        out["magnitude_factor"] = ledger["magnitude_factor"] = factor
    if "strategic_reserve_rate" in ledger:
        problem = "必须是 0 到 1 之间的数字（例如 0.15 表示 15%）"
        rate = _as_decimal(ledger["strategic_reserve_rate"], "ledger", "strategic_reserve_rate", source, problem)
        if not Decimal(0) <= rate <= Decimal(1):
            raise source.error("ledger", "strategic_reserve_rate", problem)
        out["strategic_reserve_rate"] = ledger["strategic_reserve_rate"] = rate
    if "allow_backdating" in ledger:
        out["allow_backdating"] = ledger["allow_backdating"] = _as_bool(
            ledger["allow_backdating"], "ledger", "allow_backdating", source)
    return out


def _flows(doc: dict[str, Any], source: _Source, defaults: Settings) -> dict[str, Any]:
    """[borrow] default_days, [purchase] over_receipt_rate, [scan] required."""
    out: dict[str, Any] = {"borrow_default_days": defaults.borrow_default_days,
                           "over_receipt_rate": defaults.over_receipt_rate, "scan_required": defaults.scan_required}
    borrow, purchase, scan = (doc.get(name, {}) for name in ("borrow", "purchase", "scan"))
    if "default_days" in borrow:
        out["borrow_default_days"] = _as_int(borrow["default_days"], "borrow", "default_days", source, 1, 365)
    if "over_receipt_rate" in purchase:
        problem = "必须是 0 到 1 之间的数字（例如 0.05 表示最多多收 5%）"
        rate = _as_decimal(purchase["over_receipt_rate"], "purchase", "over_receipt_rate", source, problem)
        if not Decimal(0) <= rate <= Decimal(1):
            raise source.error("purchase", "over_receipt_rate", problem)
        out["over_receipt_rate"] = rate
    if "required" in scan:
        types = scan["required"]
        if isinstance(types, str) and ("scan", "required") in source.env_origin:
            types = [t.strip() for t in types.split(",") if t.strip()]
        if not isinstance(types, list) or any(t not in DOC_TYPES for t in types):
            raise source.error("scan", "required", "必须是单据类型的列表，例如 [\"borrow\", \"sales_issue\"]；可选："
                               + "、".join(DOC_TYPES))
        out["scan_required"] = frozenset(types)
    return out


def _validation(doc: dict[str, Any], source: _Source, defaults: Settings) -> dict[str, Any]:
    validation = dict(defaults.validation)
    for doc_type, mode in doc.get("validation", {}).items():
        mode = _as_str(mode, "validation", doc_type, source).strip()
        if mode not in VALIDATION_MODES:
            raise source.error("validation", doc_type, '必须是 "strict"（严格，拦截）或 "loose"（宽松，仅警告）')
        validation[doc_type] = doc["validation"][doc_type] = mode
    return {"validation": MappingProxyType(validation)}


_CHANNEL_HINT = ('必须是 "平台:类型:地址" 或它们的列表，例如 "wecom:robot:warehouse"、"dingtalk:group:cid…"；'
                 "平台为 wecom / dingtalk / console，类型为 robot（群机器人）、group（群会话）或 user")


def _channel(value: Any, name: str, source: _Source) -> tuple[Target, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise source.error("channels", name, _CHANNEL_HINT)
    targets = []
    for item in items:
        try:
            target = parse_target(item)
        except (ValueError, AttributeError):
            raise source.error("channels", name, _CHANNEL_HINT) from None
        if target.platform not in CHANNEL_PLATFORMS or target.kind not in CHANNEL_KINDS:
            raise source.error("channels", name, _CHANNEL_HINT)
        targets.append(target)
    return tuple(targets)


def _channels(doc: dict[str, Any], source: _Source, _defaults: Settings) -> dict[str, Any]:
    section = doc.get("channels", {})
    if not isinstance(section, dict):
        raise ConfigError("[channels]", "必须是一个表（[channels]）", line=source.find_line("channels", None),
                          path=source.path)
    return {"channels": MappingProxyType({name: _channel(v, name, source) for name, v in section.items()})}


_APPROVAL_KEYS = ("roles", "order", "requester_may_sign", "distinct_people", "second_above", "second_roles")


def _approval(value: Any, code: str, source: _Source) -> ApprovalPolicy:
    section = f"approvals.{code}"
    if not isinstance(value, dict):
        raise source.error("approvals", code, "必须是一个表，例如 [approvals.loss] roles = [\"manager\"]")
    for key in value:
        if key not in _APPROVAL_KEYS:
            raise source.error(section, key, f"未知的配置项，允许：{'、'.join(_APPROVAL_KEYS)}")
    declared = DOC_TYPES[code].approval or ApprovalPolicy(("manager",))
    roles = value.get("roles", list(declared.roles))
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles) or len(set(roles)) != len(roles):
        raise source.error(section, "roles", f"必须是不重复的角色列表，角色可选：{'、'.join(ROLES)}")
    order = value.get("order", declared.order)
    if order not in ("parallel", "sequential"):
        raise source.error(section, "order", '必须是 "parallel"（同时签核）或 "sequential"（依次签核）')
    may_sign = declared.requester_may_sign
    if "requester_may_sign" in value:
        may_sign = _as_bool(value["requester_may_sign"], section, "requester_may_sign", source)
    distinct = declared.distinct_people
    if "distinct_people" in value:
        distinct = _as_bool(value["distinct_people"], section, "distinct_people", source)
    second_above = declared.second_above
    if "second_above" in value:
        problem = "必须是不小于 0 的金额（元），例如 second_above = 50000"
        second_above = _as_decimal(value["second_above"], section, "second_above", source, problem)
        if second_above < 0:
            raise source.error(section, "second_above", problem)
    second_roles = value.get("second_roles", list(declared.second_roles))
    if (not isinstance(second_roles, list) or not second_roles or any(r not in ROLES for r in second_roles)
            or len(set(second_roles)) != len(second_roles)):
        raise source.error(section, "second_roles", f"必须是不重复的角色列表，角色可选：{'、'.join(ROLES)}")
    return ApprovalPolicy(tuple(roles), order, may_sign, distinct, second_above, tuple(second_roles))


def _approvals(doc: dict[str, Any], source: _Source, _defaults: Settings) -> dict[str, Any]:
    section = doc.get("approvals", {})
    if not isinstance(section, dict):
        raise ConfigError("[approvals]", "必须是一个表（[approvals.<单据类型>]）",
                          line=source.find_line("approvals", None), path=source.path)
    out: dict[str, Any] = {}
    if "remind_after_hours" in section:  # the one scalar key: sign-offs pending longer are reminded daily
        out["approval_remind_hours"] = _as_int(section["remind_after_hours"], "approvals", "remind_after_hours",
                                               source, 1, 24 * 30)
    types = {code: v for code, v in section.items() if code != "remind_after_hours"}
    for code in types:
        if code not in DOC_TYPES:
            raise source.error("approvals", code,
                               f"未知的单据类型，可选：{'、'.join(DOC_TYPES)}（或 remind_after_hours）")
    return {**out, "approvals": MappingProxyType({code: _approval(v, code, source) for code, v in types.items()})}


def _health(doc: dict[str, Any], source: _Source, defaults: Settings) -> dict[str, Any]:
    """[health] weights = {closure, scan, discrepancy, borrow} (whole points summing to 100), threshold (0–100),
    discrepancy_hours (1–720)."""
    health = doc.get("health", {})
    out: dict[str, Any] = {"health_weights": defaults.health_weights, "health_threshold": defaults.health_threshold,
                           "health_discrepancy_hours": defaults.health_discrepancy_hours}
    if "weights" in health:
        weights = health["weights"]
        names = "、".join(f"{k}（{HEALTH_METRICS_ZH[k]}）" for k in HEALTH_WEIGHTS)
        if not isinstance(weights, dict):
            raise source.error("health", "weights", f"必须是一个表，例如 {{ closure = 30, scan = 30, discrepancy = 25, "
                                                    f"borrow = 15 }}；指标：{names}")
        for key in weights:
            if key not in HEALTH_WEIGHTS:
                raise source.error("health", "weights", f"未知的指标「{key}」，可选：{names}")
        merged = {**HEALTH_WEIGHTS, **{k: _as_int(v, "health", f"weights.{k}", source, 0, 100)
                                       for k, v in weights.items()}}
        if sum(merged.values()) != 100:
            raise source.error("health", "weights", f"各指标权重之和必须是 100（现在是 {sum(merged.values())}；"
                                                    f"未写的指标按默认 {HEALTH_WEIGHTS} 计）")
        out["health_weights"] = MappingProxyType(merged)
    if "threshold" in health:
        out["health_threshold"] = _as_int(health["threshold"], "health", "threshold", source, 0, 100)
    if "discrepancy_hours" in health:
        out["health_discrepancy_hours"] = _as_int(health["discrepancy_hours"], "health", "discrepancy_hours", source,
                                                  1, 720)
    return out


_SECTION_READERS = (_timezone, _database, _server, _ledger, _validation, _flows, _channels, _approvals, _health)


def _build(doc: dict[str, Any], source: _Source) -> Settings:
    defaults = Settings()
    values: dict[str, Any] = {}
    for read in _SECTION_READERS:
        values.update(read(doc, source, defaults))
    return Settings(**values, raw=_freeze(doc))


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load settings from `path` (default ./jxcbot.toml if present) plus JXCBOT_<SECTION>_<KEY> overrides from `env`.

    `env` defaults to os.environ; pass {} to ignore the environment. Raises ConfigError on any bad value.
    """
    shown, text = _read_file(path)
    doc = _parse_toml(shown, text) if text else {}
    source = _Source(shown, text)
    _apply_env(doc, os.environ if env is None else env, source)
    _check_structure(doc, source)
    return _build(doc, source)
