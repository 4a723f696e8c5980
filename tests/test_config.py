"""Tests for configuration loading: defaults, the example file, env overrides and located errors."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.config import VALIDATED_DOC_TYPES, ConfigError, Settings, load_config
from core.ledger.doctypes import DOC_TYPES

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "jxcbot.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./jxcbot.toml here
    s = load_config(None, env={})
    assert s.database_url == "sqlite+aiosqlite:///jxcbot.db"
    assert s.timezone == ZoneInfo("Asia/Shanghai")
    assert s.magnitude_factor == Decimal(100)
    assert s.strategic_reserve_rate == Decimal("0.15")
    assert s.allow_backdating is False
    assert (s.server_host, s.server_port, s.server_reuse_port) == ("127.0.0.1", 8080, False)
    assert set(s.validation) == set(VALIDATED_DOC_TYPES)
    assert all(s.validation_mode(t) == "strict" for t in VALIDATED_DOC_TYPES)
    assert dict(s.raw) == {}
    assert s == Settings()


def test_validated_doc_types_match_doctypes() -> None:
    assert set(VALIDATED_DOC_TYPES) == set(DOC_TYPES)


def test_validation_mode_unknown_type() -> None:
    with pytest.raises(KeyError):
        Settings().validation_mode("nonsense")


def test_default_file_in_cwd_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "[server]\nport = 9000\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(None, env={}).server_port == 9000


def test_example_file_loads() -> None:
    s = load_config(EXAMPLE, env={})
    assert s == load_config(EXAMPLE, env={})
    assert s.database_url == "sqlite+aiosqlite:///jxcbot.db"
    assert s.timezone == ZoneInfo("Asia/Shanghai")
    assert s.magnitude_factor == Decimal(100)
    assert s.strategic_reserve_rate == Decimal("0.15")
    assert s.server_port == 8080


def test_example_file_with_everything_uncommented_loads(tmp_path: Path) -> None:
    # Uncomment the placeholder settings/sections (not the prose comments) and make sure they still parse.
    lines = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if re.match(r"^# (\[|# |[a-z_]+ = )", line):
            line = line[2:]
        lines.append(line)
    s = load_config(write(tmp_path, "\n".join(lines)), env={})
    assert s.raw["wecom"]["api_base"] == "https://qyapi.weixin.qq.com"
    assert "robots" in s.raw["wecom"]
    assert {"app_key", "app_secret", "robot_code", "api_base", "oapi_base"} <= set(s.raw["dingtalk"])
    assert "jobs" in s.raw
    assert set(s.raw["validation"]) == set(VALIDATED_DOC_TYPES)


def test_file_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """timezone = "Europe/Berlin"

[database]
url = "postgresql+asyncpg://jxc:pw@db/jxc"

[server]
host = "0.0.0.0"
port = 9001
reuse_port = true

[ledger]
magnitude_factor = 50
strategic_reserve_rate = 0.2
allow_backdating = true

[validation]
loss = "loose"

[wecom]
corp_id = "ww1"
agent_id = 1000002

[jobs.daily_report]
cron = "0 18 * * *"
""",
    )
    s = load_config(path, env={})
    assert s.timezone == ZoneInfo("Europe/Berlin")
    assert s.database_url == "postgresql+asyncpg://jxc:pw@db/jxc"
    assert (s.server_host, s.server_port, s.server_reuse_port) == ("0.0.0.0", 9001, True)
    assert s.magnitude_factor == Decimal(50)
    assert s.strategic_reserve_rate == Decimal("0.2")
    assert s.allow_backdating is True
    assert s.validation_mode("loss") == "loose"
    assert s.validation_mode("transfer") == "strict"
    assert s.raw["wecom"] == {"corp_id": "ww1", "agent_id": 1000002}
    assert s.raw["jobs"]["daily_report"]["cron"] == "0 18 * * *"
    with pytest.raises(TypeError):
        s.raw["wecom"]["corp_id"] = "x"  # type: ignore[index]


def test_repr_hides_url_and_raw(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "postgresql+asyncpg://u:hunter2@db/x"\n[wecom]\nsecret = "s3cr3t"\n')
    text = repr(load_config(path, env={}))
    assert "hunter2" not in text
    assert "s3cr3t" not in text


def test_env_overrides_win_over_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'timezone = "Europe/Berlin"\n[database]\nurl = "sqlite+aiosqlite:///file.db"\n'
        "[server]\nport = 9001\n[ledger]\nmagnitude_factor = 50\nallow_backdating = false\n"
        '[wecom]\ncorp_id = "ww1"\n',
    )
    env = {
        "JXCBOT_DATABASE_URL": "sqlite+aiosqlite:///env.db",
        "JXCBOT_TIMEZONE": "Asia/Tokyo",
        "JXCBOT_SERVER_PORT": " 9100 ",
        "JXCBOT_LEDGER_MAGNITUDE_FACTOR": "20.5",
        "JXCBOT_LEDGER_STRATEGIC_RESERVE_RATE": "0.3",
        "JXCBOT_LEDGER_ALLOW_BACKDATING": "yes",
        "JXCBOT_VALIDATION_SALES_ISSUE": "loose",
        "JXCBOT_WECOM_SECRET": "topsecret",
        "JXCBOT_WECOM_ENCODING_AES_KEY": "aeskey",
        "JXCBOT_CONFIG": "/somewhere/else.toml",  # not a <SECTION>_<KEY> override
        "PATH": "/usr/bin",
    }
    s = load_config(path, env=env)
    assert s.database_url == "sqlite+aiosqlite:///env.db"
    assert s.timezone == ZoneInfo("Asia/Tokyo")
    assert s.server_port == 9100
    assert s.magnitude_factor == Decimal("20.5")
    assert s.strategic_reserve_rate == Decimal("0.3")
    assert s.allow_backdating is True
    assert s.validation_mode("sales_issue") == "loose"
    assert s.raw["wecom"] == {"corp_id": "ww1", "secret": "topsecret", "encoding_aes_key": "aeskey"}
    assert s.raw["server"]["port"] == 9100
    assert "config" not in s.raw


def test_env_without_file(tmp_path: Path) -> None:
    s = load_config(None, env={"JXCBOT_DINGTALK_APP_KEY": "k", "JXCBOT_SERVER_HOST": "0.0.0.0"})
    assert s.raw["dingtalk"] == {"app_key": "k"}
    assert s.server_host == "0.0.0.0"


def test_env_test_database_url_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite+aiosqlite:///file.db"\n')
    s = load_config(path, env={"JXCBOT_TEST_DATABASE_URL": "postgresql+asyncpg://u:p@h/test"})
    assert s.database_url == "sqlite+aiosqlite:///file.db"
    assert "test" not in s.raw
    # Not a URL at all: must not even be validated.
    assert load_config(None, env={"JXCBOT_TEST_DATABASE_URL": "garbage"}).database_url.startswith("sqlite")


def test_missing_config_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    err = info.value
    assert err.key == "--config"
    assert err.path == str(missing)
    assert "--config" in str(err)
    assert str(missing) in str(err)


def test_bad_database_url_reports_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'timezone = "Asia/Shanghai"\n\n[database]\n# comment\nurl = "mysql://u:p@h/db"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    err = info.value
    assert (err.key, err.line, err.path) == ("[database] url", 5, str(path))
    assert str(err) == (
        f"配置错误：[database] url（{path} 第 5 行）：必须以 sqlite+aiosqlite:// 或 postgresql+asyncpg:// 开头"
    )


def test_bad_timezone_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, '# header\n\ntimezone = "Mars/Olympus_Mons"\n[database]\nurl = "sqlite+aiosqlite:///x.db"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (info.value.key, info.value.line) == ("timezone", 3)
    assert "timezone" in str(info.value)
    assert "第 3 行" in str(info.value)


def test_bad_validation_mode_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 8081\n\n[validation]\nloss = "loose"\ntransfer = "lenient"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (info.value.key, info.value.line) == ("[validation] transfer", 6)
    assert "[validation] transfer" in str(info.value)
    assert "第 6 行" in str(info.value)


def test_unknown_validation_doc_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[validation]\nsale_issue = "loose"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (info.value.key, info.value.line) == ("[validation] sale_issue", 2)


def test_unknown_key_in_database_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 8081\n[database]\nurl = "sqlite+aiosqlite:///x.db"\nuri = "oops"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (info.value.key, info.value.line) == ("[database] uri", 5)
    assert "[database] uri" in str(info.value)
    assert "第 5 行" in str(info.value)


def test_unknown_sections_are_kept_but_unknown_top_level_key_is_an_error(tmp_path: Path) -> None:
    s = load_config(write(tmp_path, "[future]\nanything = 1\n"), env={})
    assert s.raw["future"] == {"anything": 1}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 'timezon = "Asia/Shanghai"\n', "typo.toml"), env={})
    assert (info.value.key, info.value.line) == ("timezon", 1)


def test_dotted_and_inline_keys_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, 'timezone = "UTC"\nserver.port = 0\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (info.value.key, info.value.line) == ("[server] port", 2)
    path = write(tmp_path, '\n\ndatabase = { url = "nope" }\n', "inline.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (info.value.key, info.value.line) == ("[database] url", 3)


@pytest.mark.parametrize(
    ("body", "key", "line"),
    [
        ("[server]\nport = 70000\n", "[server] port", 2),
        ('[server]\nport = "8080"\n', "[server] port", 2),
        ("[server]\nport = true\n", "[server] port", 2),
        ('[server]\nhost = ""\n', "[server] host", 2),
        ("[ledger]\n\nmagnitude_factor = 1\n", "[ledger] magnitude_factor", 3),
        ("[ledger]\nstrategic_reserve_rate = 1.5\n", "[ledger] strategic_reserve_rate", 2),
        ("[ledger]\nstrategic_reserve_rate = nan\n", "[ledger] strategic_reserve_rate", 2),
        ('[ledger]\nallow_backdating = "yes"\n', "[ledger] allow_backdating", 2),
        ('database = "sqlite+aiosqlite:///x.db"\n', "[database]", 1),
    ],
)
def test_bad_values_report_key_and_line(tmp_path: Path, body: str, key: str, line: int) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (info.value.key, info.value.line, info.value.path) == (key, line, str(path))
    assert key in str(info.value)


def test_toml_syntax_error_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite+aiosqlite:///x.db"\nport 8080\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    err = info.value
    assert err.line == 3
    assert err.path == str(path)
    assert "第 3 行" in str(err)
    assert "TOML" in str(err)


def test_toml_error_at_end_of_document(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nhost = "127.0.0.1"\nport =')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.line == 3


def test_bad_env_int_names_env_var(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 8081\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"JXCBOT_SERVER_PORT": "eighty"})
    err = info.value
    assert err.key == "[server] port"
    assert err.line is None
    assert err.path == "JXCBOT_SERVER_PORT"
    assert "JXCBOT_SERVER_PORT" in str(err)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JXCBOT_LEDGER_MAGNITUDE_FACTOR", "a lot"),
        ("JXCBOT_LEDGER_ALLOW_BACKDATING", "maybe"),
        ("JXCBOT_TIMEZONE", "Nowhere/Land"),
        ("JXCBOT_VALIDATION_LOSS", "lenient"),
        ("JXCBOT_DATABASE_URI", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_bad_env_values_name_env_var(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={name: value})
    assert info.value.path == name
    assert info.value.line is None
    assert name in str(info.value)


def test_secret_values_never_in_error_messages(tmp_path: Path) -> None:
    secret = "postgres-Pa55w0rd-XYZ"
    # A bad database URL carrying a password, from the file and from the environment.
    path = write(tmp_path, f'[database]\nurl = "mysql://admin:{secret}@db/jxc"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert secret not in str(info.value)
    assert secret not in repr(info.value.args)
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"JXCBOT_DATABASE_URL": f"mysql://admin:{secret}@db/jxc"})
    assert secret not in str(info.value)
    # A secret-bearing unknown key and a mistyped secret value elsewhere in the file.
    path = write(tmp_path, f'[database]\npassword = "{secret}"\n', "pw.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"JXCBOT_WECOM_SECRET": secret})
    assert "[database] password" in str(info.value)
    assert secret not in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"JXCBOT_SERVER_PORT": secret, "JXCBOT_WECOM_SECRET": secret})
    assert secret not in str(info.value)


def test_reuse_port_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, '[server]\nreuse_port = "yes"\n'), env={})
    assert "reuse_port" in str(e.value)


def test_borrow_purchase_and_scan_settings(tmp_path: Path) -> None:
    s = load_config(None, env={})
    assert s.borrow_default_days == 14 and s.over_receipt_rate == 0
    assert s.scan_required == {"borrow", "sales_issue", "other_issue"}
    s = load_config(write(tmp_path, '[borrow]\ndefault_days = 7\n[purchase]\nover_receipt_rate = 0.05\n'
                                    '[scan]\nrequired = ["borrow"]\n'), env={})
    assert (s.borrow_default_days, s.over_receipt_rate, s.scan_required) == (7, Decimal("0.05"), {"borrow"})
    s = load_config(None, env={"JXCBOT_SCAN_REQUIRED": "borrow, other_issue", "JXCBOT_BORROW_DEFAULT_DAYS": "30"})
    assert s.scan_required == {"borrow", "other_issue"} and s.borrow_default_days == 30
    for body, key, line in (('[borrow]\ndefault_days = 0\n', "[borrow] default_days", 2),
                            ('[purchase]\nover_receipt_rate = 2\n', "[purchase] over_receipt_rate", 2),
                            ('[scan]\nrequired = ["lend"]\n', "[scan] required", 2),
                            ('[scan]\nrequird = []\n', "[scan] requird", 2)):
        with pytest.raises(ConfigError) as e:
            load_config(write(tmp_path, body), env={})
        assert key in str(e.value) and f"第 {line} 行" in str(e.value), str(e.value)


@pytest.mark.parametrize(("body", "key", "line"), [
    ('[wecom]\ncorp_idd = "ww1"\n', "[wecom] corp_idd", 2),
    ('[dingtalk]\napp_key = "k"\nmodee = "stream"\n', "[dingtalk] modee", 3),
])
def test_unknown_platform_keys_are_refused_with_the_allowed_ones(tmp_path: Path, body: str, key: str,
                                                                 line: int) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, body), env={})
    assert key in str(e.value) and f"第 {line} 行" in str(e.value) and "允许的键" in str(e.value)


def test_unknown_dingtalk_robot_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, '[dingtalk.robots.ops]\naccess_token = "x"\nsecrett = "y"\n'), env={})
    assert "[dingtalk.robots.ops] secrett" in str(e.value) and "access_token、keyword、secret" in str(e.value)
