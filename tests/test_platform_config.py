"""The [wecom]/[dingtalk] config sections and the platform transports the server registers at start."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.dingtalk.client import DingTalkClient, DingTalkRobotClient
from bot.platforms import DingTalkConfig, WeComConfig, dingtalk_config, wecom_config
from bot.server import SENDER, build_app
from bot.wecom.client import WeComRobotClient, WeComTransport
from cards.model import Message
from cards.parts import split_message
from core.config import ConfigError, load_config
from core.messaging.outbound import enqueue
from core.messaging.targets import Target
from tests.fakes.dingtalk import FakeDingTalk
from tests.fakes.wecom import FakeWeCom
from tests.waiting import until

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 letters/digits

WECOM_MIN = {"corp_id": "wwcorp", "agent_id": 1000002, "secret": "app-secret", "token": "cb-token",
             "encoding_aes_key": AES_KEY}
DINGTALK_MIN = {"app_key": "ding-key", "app_secret": "ding-secret"}


def _load(tmp_path: Path, toml: str, env: dict[str, str] | None = None):
    """Settings from a config file plus an explicit environment (never os.environ)."""
    path = tmp_path / "jxcbot.toml"
    path.write_text(toml, encoding="utf-8")
    return load_config(path, env=env or {})


def _wecom_error(**table: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        wecom_config({"wecom": table})
    return info.value


def _dingtalk_error(**table: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        dingtalk_config({"dingtalk": table})
    return info.value


# -- valid configurations ----------------------------------------------------------------------------------


def test_sections_absent_or_without_their_id_mean_platform_off():
    assert wecom_config({}) is None and dingtalk_config({}) is None
    assert wecom_config({"wecom": {}}) is None and dingtalk_config({"dingtalk": {}}) is None
    assert wecom_config({"wecom": "yes"}) is None and dingtalk_config({"dingtalk": 1}) is None


def test_wecom_minimal_config_gets_the_default_api_base(tmp_path):
    settings = _load(tmp_path, """
[wecom]
corp_id = "wwcorp"
agent_id = 1000002
secret = "app-secret"
token = "cb-token"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
""")
    cfg = wecom_config(settings.raw)
    assert cfg == WeComConfig("wwcorp", 1000002, "app-secret", "cb-token", AES_KEY)
    assert cfg.api_base == "https://qyapi.weixin.qq.com"
    assert cfg.robots == {}
    assert isinstance(cfg.agent_id, int)


def test_wecom_full_config_with_robots(tmp_path):
    settings = _load(tmp_path, """
[wecom]
corp_id = " wwcorp "
agent_id = "1000002"
secret = "app-secret"
token = "cb-token"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
api_base = "http://127.0.0.1:9000"

[wecom.robots]
warehouse = "robot-key-0001"
"采购群" = "robot-key-0002"
""")
    cfg = wecom_config(settings.raw)
    assert cfg.corp_id == "wwcorp"  # surrounding blanks are dropped
    assert cfg.agent_id == 1000002  # a quoted number is accepted too
    assert cfg.api_base == "http://127.0.0.1:9000"
    assert dict(cfg.robots) == {"warehouse": "robot-key-0001", "采购群": "robot-key-0002"}
    # secrets stay out of the repr (it ends up in logs)
    assert "app-secret" not in repr(cfg) and "cb-token" not in repr(cfg) and "robot-key" not in repr(cfg)


def test_wecom_secrets_come_from_the_environment(tmp_path):
    settings = _load(tmp_path, '[wecom]\ncorp_id = "wwcorp"\nagent_id = 1000002\n', env={
        "JXCBOT_WECOM_SECRET": "env-secret",
        "JXCBOT_WECOM_TOKEN": "env-token",
        "JXCBOT_WECOM_ENCODING_AES_KEY": AES_KEY,
    })
    cfg = wecom_config(settings.raw)
    assert (cfg.secret, cfg.token, cfg.encoding_aes_key) == ("env-secret", "env-token", AES_KEY)


def test_wecom_whole_section_from_the_environment():
    settings = load_config(None, env={
        "JXCBOT_WECOM_CORP_ID": "wwcorp", "JXCBOT_WECOM_AGENT_ID": "1000002", "JXCBOT_WECOM_SECRET": "s",
        "JXCBOT_WECOM_TOKEN": "t", "JXCBOT_WECOM_ENCODING_AES_KEY": AES_KEY,
        "JXCBOT_WECOM_API_BASE": "http://127.0.0.1:9000",
    })
    assert wecom_config(settings.raw) == WeComConfig("wwcorp", 1000002, "s", "t", AES_KEY,
                                                     "http://127.0.0.1:9000")


def test_wecom_environment_overrides_the_file(tmp_path):
    settings = _load(tmp_path, '[wecom]\ncorp_id = "wwcorp"\nagent_id = 1\nsecret = "file-secret"\n'
                               f'token = "t"\nencoding_aes_key = "{AES_KEY}"\n',
                     env={"JXCBOT_WECOM_SECRET": "env-secret"})
    assert wecom_config(settings.raw).secret == "env-secret"


def test_dingtalk_minimal_config_gets_the_defaults(tmp_path):
    settings = _load(tmp_path, '[dingtalk]\napp_key = "ding-key"\napp_secret = "ding-secret"\n')
    cfg = dingtalk_config(settings.raw)
    assert cfg == DingTalkConfig("ding-key", "ding-secret")
    assert cfg.api_base == "https://api.dingtalk.com"
    assert cfg.oapi_base == "https://oapi.dingtalk.com"
    assert cfg.robot_code == "" and cfg.public_url == ""
    assert cfg.card_template_id is None and cfg.card_callback_token is None
    assert cfg.link_secret is None and cfg.card_callback_route_key is None
    assert cfg.robots == {}


def test_dingtalk_full_config_with_robots(tmp_path):
    settings = _load(tmp_path, """
[dingtalk]
app_key = "ding-key"
app_secret = "ding-secret"
robot_code = "ding-robot"
api_base = "http://127.0.0.1:9001"
oapi_base = "http://127.0.0.1:9002"
card_template_id = "tpl.approval"
card_callback_token = "card-secret"
card_callback_route_key = "jxcbot"
link_secret = "link-secret"
public_url = "https://bot.example.com/"

[dingtalk.robots]
ops = { access_token = "tok-ops", secret = "SECops" }
keyword_only = { access_token = "tok-kw", keyword = "库存" }
""")
    cfg = dingtalk_config(settings.raw)
    assert cfg == DingTalkConfig(
        "ding-key", "ding-secret", "ding-robot", "http://127.0.0.1:9001", "http://127.0.0.1:9002",
        "tpl.approval", "card-secret",
        {"ops": {"access_token": "tok-ops", "secret": "SECops"},
         "keyword_only": {"access_token": "tok-kw", "keyword": "库存"}},
        "link-secret", "jxcbot", "https://bot.example.com")  # public_url loses its trailing slash
    for secret in ("ding-secret", "card-secret", "link-secret", "tok-ops", "SECops"):
        assert secret not in repr(cfg)


def test_dingtalk_secrets_come_from_the_environment(tmp_path):
    settings = _load(tmp_path, '[dingtalk]\napp_key = "ding-key"\n', env={
        "JXCBOT_DINGTALK_APP_SECRET": "env-secret", "JXCBOT_DINGTALK_CARD_CALLBACK_TOKEN": "env-card",
        "JXCBOT_DINGTALK_LINK_SECRET": "env-link",
    })
    cfg = dingtalk_config(settings.raw)
    assert (cfg.app_secret, cfg.card_callback_token, cfg.link_secret) == ("env-secret", "env-card", "env-link")


# -- invalid configurations --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["agent_id", "secret", "token", "encoding_aes_key"])
@pytest.mark.parametrize("blank", ["missing", "", "   "])
def test_wecom_missing_required_key_names_it_and_its_env_var(key, blank):
    table = dict(WECOM_MIN)
    if blank == "missing":
        del table[key]
    else:
        table[key] = blank
    error = _wecom_error(**table)
    assert error.key == f"[wecom] {key}"
    assert f"[wecom] {key}" in str(error)
    assert "缺少该项" in str(error) and f"JXCBOT_WECOM_{key.upper()}" in str(error)


@pytest.mark.parametrize("key", ["app_secret"])
@pytest.mark.parametrize("blank", ["missing", "", "  "])
def test_dingtalk_missing_app_secret_names_it_and_its_env_var(key, blank):
    table = dict(DINGTALK_MIN)
    if blank == "missing":
        del table[key]
    else:
        table[key] = blank
    error = _dingtalk_error(**table)
    assert error.key == "[dingtalk] app_secret"
    assert "缺少该项" in str(error) and "JXCBOT_DINGTALK_APP_SECRET" in str(error)


@pytest.mark.parametrize("agent_id", ["abc", "-5", "10.5", "1000002x"])
def test_wecom_agent_id_must_be_a_number(agent_id):
    error = _wecom_error(**{**WECOM_MIN, "agent_id": agent_id})
    assert error.key == "[wecom] agent_id"
    assert "必须是数字" in str(error) and "AgentId" in str(error)


@pytest.mark.parametrize("key", ["secret", "token", "corp_id", "api_base"])
@pytest.mark.parametrize("value", [["x"], {"a": "b"}, True, 1.5])
def test_wecom_non_string_values_are_refused(key, value):
    error = _wecom_error(**{**WECOM_MIN, key: value})
    assert error.key == f"[wecom] {key}" and "必须是字符串" in str(error)


@pytest.mark.parametrize("key", ["app_secret", "robot_code", "api_base", "oapi_base", "card_template_id",
                                 "card_callback_token", "link_secret", "card_callback_route_key", "public_url"])
def test_dingtalk_non_string_values_are_refused(key):
    error = _dingtalk_error(**{**DINGTALK_MIN, key: ["x"]})
    assert error.key == f"[dingtalk] {key}" and "必须是字符串" in str(error)


@pytest.mark.parametrize("aes", ["short", AES_KEY[:-1], AES_KEY + "H", AES_KEY * 2])
def test_wecom_encoding_aes_key_must_be_43_characters(aes):
    error = _wecom_error(**{**WECOM_MIN, "encoding_aes_key": aes})
    assert error.key == "[wecom] encoding_aes_key"
    assert "43 个英文字母或数字" in str(error) and "EncodingAESKey" in str(error)


@pytest.mark.parametrize("aes", ["+" * 43, AES_KEY[:-1] + "/", AES_KEY[:-1] + "=", "密" * 43])
def test_wecom_encoding_aes_key_must_be_letters_and_digits(aes):
    error = _wecom_error(**{**WECOM_MIN, "encoding_aes_key": aes})
    assert error.key == "[wecom] encoding_aes_key"


def test_wecom_bad_aes_key_characters_are_a_config_error_not_a_traceback_at_start(settings, db):
    raw = {"wecom": {**WECOM_MIN, "encoding_aes_key": AES_KEY[:-1] + "+"}}
    with pytest.raises(ConfigError) as info:
        build_app(replace(settings, raw=MappingProxyType(raw)), db)
    assert info.value.key == "[wecom] encoding_aes_key"


@pytest.mark.parametrize("robots", [
    {"warehouse": {"key": "robot-key"}},  # a table instead of the key
    {"warehouse": 12345},
    {"warehouse": ""},
    "robot-key",  # robots = "…" instead of a table
    ["robot-key"],
])
def test_wecom_robots_in_the_wrong_shape(robots):
    error = _wecom_error(**{**WECOM_MIN, "robots": robots})
    assert error.key in ("[wecom.robots]", "[wecom.robots] warehouse")  # the robot named when there is one
    assert '名称 = "webhook key"' in str(error)


def test_wecom_robots_in_the_wrong_shape_from_toml(tmp_path):
    settings = _load(tmp_path, f"""
[wecom]
corp_id = "wwcorp"
agent_id = 1000002
secret = "s"
token = "t"
encoding_aes_key = "{AES_KEY}"

[wecom.robots.warehouse]
key = "robot-key-0001"
""")
    with pytest.raises(ConfigError, match=r"\[wecom\.robots\].*webhook key"):
        wecom_config(settings.raw)


@pytest.mark.parametrize("robots", [
    {"ops": "tok-ops"},  # a bare string instead of { access_token = … }
    {"ops": {"secret": "SECops"}},  # no access_token
    {"ops": {"access_token": "", "secret": "SECops"}},
    "tok-ops",
    ["tok-ops"],
])
def test_dingtalk_robots_in_the_wrong_shape(robots):
    error = _dingtalk_error(**{**DINGTALK_MIN, "robots": robots})
    assert error.key in ("[dingtalk.robots]", "[dingtalk.robots] ops")
    assert "access_token" in str(error) and "secret" in str(error) and "名称 = {" in str(error)


def test_dingtalk_robots_in_the_wrong_shape_from_toml(tmp_path):
    settings = _load(tmp_path, '[dingtalk]\napp_key = "k"\napp_secret = "s"\n\n[dingtalk.robots]\nops = "tok"\n')
    with pytest.raises(ConfigError, match=r"\[dingtalk\.robots\].*access_token"):
        dingtalk_config(settings.raw)


@pytest.mark.parametrize("section,key", [("wecom", "api_base"), ("dingtalk", "api_base"),
                                         ("dingtalk", "oapi_base"), ("dingtalk", "public_url")])
def test_base_urls_must_be_http(section, key):
    table = {**(WECOM_MIN if section == "wecom" else DINGTALK_MIN), key: "qyapi.weixin.qq.com"}
    with pytest.raises(ConfigError) as info:
        (wecom_config if section == "wecom" else dingtalk_config)({section: table})
    assert info.value.key == f"[{section}] {key}"


@pytest.mark.parametrize("agent_id", [1.5, True])
def test_wecom_agent_id_wrong_toml_type_says_number(agent_id):
    assert "必须是数字" in str(_wecom_error(**{**WECOM_MIN, "agent_id": agent_id}))


def test_wecom_section_without_corp_id_is_an_error():
    table = {k: v for k, v in WECOM_MIN.items() if k != "corp_id"}
    assert _wecom_error(**table).key == "[wecom] corp_id"


def test_dingtalk_section_without_app_key_is_an_error():
    table = {k: v for k, v in DINGTALK_MIN.items() if k != "app_key"}
    assert _dingtalk_error(**table).key == "[dingtalk] app_key"


def test_dingtalk_robot_access_token_must_be_a_string():
    error = _dingtalk_error(**{**DINGTALK_MIN, "robots": {"ops": {"access_token": 12345, "secret": "SECops"}}})
    assert error.key == "[dingtalk.robots] ops" and "access_token 必须是字符串" in str(error)


def test_group_robots_alone_are_a_valid_setup_without_callbacks():
    """Only [wecom.robots] / [dingtalk.robots]: the robots are configured, the apps (and their callbacks) are not."""
    wecom = wecom_config({"wecom": {"robots": {"warehouse": "robot-key-0001"}}})
    assert wecom is not None and not wecom.has_app and dict(wecom.robots) == {"warehouse": "robot-key-0001"}
    dingtalk = dingtalk_config({"dingtalk": {"robots": {"ops": {"access_token": "tok", "secret": "SECops"}}}})
    assert dingtalk is not None and not dingtalk.has_app and "ops" in dingtalk.robots
    assert wecom_config({"wecom": {}}) is None and dingtalk_config({"dingtalk": {}}) is None


# -- transports registered at start ---------------------------------------------------------------------------


@pytest.fixture
async def both():
    """A fake WeCom with robot "warehouse" and a fake DingTalk with a signed robot "ops"."""
    async with FakeWeCom() as wecom, FakeDingTalk() as dingtalk:
        dingtalk.add_robot("ding-robot-token", secret="SECding-robot-secret")
        yield wecom, dingtalk


def _raw(wecom: FakeWeCom, dingtalk: FakeDingTalk) -> dict[str, Any]:
    return {
        "wecom": {"corp_id": wecom.corp_id, "agent_id": wecom.agent_id, "secret": wecom.secret, "token": "tok",
                  "encoding_aes_key": AES_KEY, "api_base": wecom.base_url,
                  "robots": {"warehouse": wecom.robot_key("warehouse")}},
        "dingtalk": {"app_key": dingtalk.app_key, "app_secret": dingtalk.app_secret,
                     "robot_code": dingtalk.robot_code, "api_base": dingtalk.url, "oapi_base": dingtalk.url,
                     "robots": {"ops": {"access_token": "ding-robot-token", "secret": "SECding-robot-secret"}}},
    }


async def test_configured_robots_are_registered_as_transports_at_start(db, settings, both):
    wecom, dingtalk = both
    app = build_app(replace(settings, raw=MappingProxyType(_raw(wecom, dingtalk))), db)
    transports = app[SENDER].transports
    assert "wecom" not in transports and "dingtalk" not in transports  # registered when the app starts
    async with TestClient(TestServer(app)):
        assert {"console", "wecom", "dingtalk"} <= set(transports)
        wt, dt = transports["wecom"], transports["dingtalk"]
        assert isinstance(wt, WeComTransport) and isinstance(wt.robots, WeComRobotClient)
        assert isinstance(dt, DingTalkClient) and isinstance(dt.robots, DingTalkRobotClient)
        assert wt.app is not None


async def test_queued_robot_messages_reach_both_fakes(db, settings, both):
    wecom, dingtalk = both
    app = build_app(replace(settings, raw=MappingProxyType(_raw(wecom, dingtalk))), db)
    async with TestClient(TestServer(app)):
        sender = app[SENDER]
        now = datetime.now(UTC)
        await db.write(lambda s: enqueue(s, "robot:wecom:1", Target("wecom", "robot", "warehouse"),
                                         Message("text", text="企微群：淡奶油库存不足"), now, split=split_message))
        await db.write(lambda s: enqueue(s, "robot:dingtalk:1", Target("dingtalk", "robot", "ops"),
                                         Message("text", text="钉钉群：淡奶油库存不足"), now, split=split_message))
        sender.wake()
        await until(lambda: wecom.robot_messages, "the WeCom robot message")
        await until(lambda: dingtalk.messages("robot"), "the DingTalk robot message")
    key, payload = wecom.robot_messages[0]
    assert key == wecom.robot_key("warehouse")
    assert payload["msgtype"] == "text" and "企微群：淡奶油库存不足" in payload["text"]["content"]
    [sent] = dingtalk.messages("robot")
    assert sent.address == "ding-robot-token"  # signed with the robot secret, or the fake would refuse it
    assert "钉钉群：淡奶油库存不足" in str(sent.payload)
    assert wecom.messages == [] and dingtalk.messages("user") == []  # robots, not the app channels


async def test_a_transport_passed_to_build_app_wins_over_the_configured_one(db, settings, both):
    wecom, dingtalk = both

    class Mine:
        platform = "wecom"

        async def send(self, target: Target, message: Message) -> None:
            raise AssertionError("not used")

    mine = Mine()
    app = build_app(replace(settings, raw=MappingProxyType(_raw(wecom, dingtalk))), db,
                    transports={"wecom": mine})
    async with TestClient(TestServer(app)):
        assert app[SENDER].transports["wecom"] is mine
        assert isinstance(app[SENDER].transports["dingtalk"], DingTalkClient)


async def test_robots_only_the_messages_go_out_and_no_callback_is_served(db, settings, both):
    wecom, dingtalk = both
    raw = {"wecom": {"api_base": wecom.base_url, "robots": {"warehouse": wecom.robot_key("warehouse")}},
           "dingtalk": {"oapi_base": dingtalk.url,
                        "robots": {"ops": {"access_token": "ding-robot-token", "secret": "SECding-robot-secret"}}}}
    app = build_app(replace(settings, raw=MappingProxyType(raw)), db)
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/wecom/callback", data=b"<xml/>")).status == 404
        assert (await client.post("/dingtalk/callback", data=b"{}")).status == 404
        now = datetime.now(UTC)
        await db.write(lambda s: enqueue(s, "robot:wecom:2", Target("wecom", "robot", "warehouse"),
                                         Message("text", text="企微群：盘点提醒"), now, split=split_message))
        await db.write(lambda s: enqueue(s, "robot:dingtalk:2", Target("dingtalk", "robot", "ops"),
                                         Message("text", text="钉钉群：盘点提醒"), now, split=split_message))
        app[SENDER].wake()
        await until(lambda: wecom.robot_messages, "the WeCom robot message")
        await until(lambda: dingtalk.messages("robot"), "the DingTalk robot message")
    assert "企微群：盘点提醒" in str(wecom.robot_messages[0][1])
    assert "钉钉群：盘点提醒" in str(dingtalk.messages("robot")[0].payload)
