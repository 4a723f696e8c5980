"""The [channels] section of the config file: named group destinations as Targets, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import ConfigError, load_config
from core.messaging.targets import Target

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "jxcbot.toml"
    path.write_text(body, encoding="utf-8")
    return path


def refused(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, body), env=env or {})
    return info.value


def test_no_channels_section_means_no_channels():
    assert dict(load_config(None, env={}).channels) == {}


def test_channels_are_parsed_into_targets(tmp_path):
    s = load_config(write(tmp_path, """
[channels]
supervisors = "wecom:robot:warehouse"
purchasing = ["wecom:robot:purchasing", "dingtalk:robot:ops"]
night = "dingtalk:group:cidXYZ==, wecom:robot:night"
boss = "dingtalk:user:staff-li"
demo = "console:group:演示"
"""), env={})
    assert dict(s.channels) == {
        "supervisors": (Target("wecom", "robot", "warehouse"),),
        "purchasing": (Target("wecom", "robot", "purchasing"), Target("dingtalk", "robot", "ops")),
        "night": (Target("dingtalk", "group", "cidXYZ=="), Target("wecom", "robot", "night")),  # comma list
        "boss": (Target("dingtalk", "user", "staff-li"),),
        "demo": (Target("console", "group", "演示"),),
    }
    with pytest.raises(TypeError):
        s.channels["new"] = ()  # type: ignore[index]  # read-only


def test_a_channel_can_come_from_the_environment(tmp_path):
    s = load_config(write(tmp_path, '[channels]\nsupervisors = "wecom:robot:warehouse"\n'),
                    env={"JXCBOT_CHANNELS_SUPERVISORS": "dingtalk:robot:ops,wecom:robot:wh2"})
    assert s.channels["supervisors"] == (Target("dingtalk", "robot", "ops"), Target("wecom", "robot", "wh2"))


@pytest.mark.parametrize("value", ['"wecom:robot"', '"warehouse"', '""', '"wecom::warehouse"', '":robot:warehouse"',
                                   '["wecom:robot:ok", "wecom:robot"]', "[]", "42", '["wecom:robot:ok", 7]',
                                   '{ robot = "x" }'])
def test_a_malformed_channel_is_a_config_error_naming_the_key_and_line(tmp_path, value):
    err = refused(tmp_path, f'timezone = "Asia/Shanghai"\n\n[channels]\nok = "wecom:robot:a"\nsupervisors = {value}\n')
    assert (err.key, err.line, err.path) == ("[channels] supervisors", 5, str(tmp_path / "jxcbot.toml"))
    assert str(err).startswith(f"配置错误：[channels] supervisors（{tmp_path / 'jxcbot.toml'} 第 5 行）：")
    assert '"平台:类型:地址"' in err.problem and "wecom / dingtalk / console" in err.problem


@pytest.mark.parametrize("value", ['"slack:robot:warehouse"', '"WeCom:robot:warehouse"', '"feishu:group:oc_1"',
                                   '["wecom:robot:ok", "telegram:user:1"]'])
def test_an_unknown_platform_is_refused(tmp_path, value):
    err = refused(tmp_path, f"[channels]\nsupervisors = {value}\n")
    assert (err.key, err.line) == ("[channels] supervisors", 2)
    assert "wecom / dingtalk / console" in err.problem


@pytest.mark.parametrize("value", ['"wecom:bot:warehouse"', '"dingtalk:session:https://hook"'])
def test_a_kind_other_than_robot_group_or_user_is_refused(tmp_path, value):
    """A session webhook expires within hours, so it is no channel; an unknown kind is a typo."""
    err = refused(tmp_path, f"[channels]\nsupervisors = {value}\n")
    assert err.key == "[channels] supervisors" and "robot" in err.problem and "group" in err.problem


def test_a_bad_channel_from_the_environment_names_the_variable(tmp_path):
    err = refused(tmp_path, "", env={"JXCBOT_CHANNELS_SUPERVISORS": "wecom-robot-warehouse"})
    assert err.key == "[channels] supervisors" and err.from_env
    assert "环境变量 JXCBOT_CHANNELS_SUPERVISORS" in str(err)


def test_channels_must_be_a_table(tmp_path):
    err = refused(tmp_path, 'channels = "wecom:robot:warehouse"\n')
    assert "channels" in err.key and err.line == 1


def test_the_example_file_loads_and_its_commented_channels_parse(tmp_path):
    assert dict(load_config(EXAMPLE, env={}).channels) == {}  # commented out: none by default
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("# [channels]")
    block = []
    for ln in text[start:].splitlines()[1:]:
        if not ln.startswith("#") or ln.startswith("# ["):
            break
        if re.match(r"^# [a-z_]+ = ", ln):
            block.append(ln[2:])
    assert block, "config.example.toml shows no [channels] example"
    s = load_config(write(tmp_path, "[channels]\n" + "\n".join(block) + "\n"), env={})
    assert s.channels["supervisors"] == (Target("wecom", "robot", "warehouse"),)
    assert s.channels["purchasing"] == (Target("wecom", "robot", "purchasing"), Target("dingtalk", "robot", "ops"))
