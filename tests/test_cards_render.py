"""cards.render: the Jinja2 card templates give valid JSON of the expected shape and readable fallbacks."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cards import render
from cards.model import Button, Message

NASTY = '采购 "申请"\\ </script> 😀 \'引号\' & <b>'
BODY = '奶油 24 箱，**待审批**\n第二行 "引号" 反斜杠\\n </ 结束 🍰\t{{ not_jinja }}'
APPROVAL = Message("card", title=NASTY, text=BODY, buttons=(
    Button("同意", "approval:12:1:approve", "primary"), Button("驳回 </", "approval:12:1:reject", "danger"),
    Button("转交给采购主管复核", "approval:12:1:forward")))


def test_wecom_template_card_structure() -> None:
    card = render.wecom_template_card(APPROVAL, "jxc_abc")
    assert card == {
        "card_type": "button_interaction",
        "main_title": {"title": NASTY},
        "sub_title_text": BODY,
        "task_id": "jxc_abc",
        "button_list": [
            {"type": 0, "text": "同意", "style": 1, "key": "approval:12:1:approve"},
            {"type": 0, "text": "驳回 </", "style": 3, "key": "approval:12:1:reject"},
            {"type": 0, "text": "转交给采购主管复核", "style": 2, "key": "approval:12:1:forward"},
        ],
    }


def test_wecom_template_card_limits_and_title_fallback() -> None:
    long = Message("card", text="\n  第一行标题  \n" + "很长" * 100, buttons=(Button("一二三四五六七八九十十一", "k"),))
    card = render.wecom_template_card(long, "t")
    assert card["main_title"]["title"] == "第一行标题"
    assert len(card["sub_title_text"]) == 160 and card["sub_title_text"].endswith("…")
    assert card["button_list"][0]["text"] == "一二三四五六七八九…"
    assert render.wecom_template_card(Message("card", buttons=(Button("a", "k"),)), "t")["main_title"] == {
        "title": "-"}
    assert "sub_title_text" not in render.wecom_template_card(Message("card", title="t", buttons=(Button("a", "k"),)),
                                                              "t")


def test_wecom_card_update_bodies() -> None:
    grey = render.wecom_card_update(Message("card", title="已同意 " + NASTY), user="li", agent_id=1000002,
                                    response_code="rc1", task_id="unused")
    assert grey == {"userids": ["li"], "agentid": 1000002, "response_code": "rc1",
                    "button": {"replace_name": ("已同意 " + NASTY)[:19] + "…"}}
    assert render.wecom_card_update(Message("card"), user="li", agent_id=1, response_code="r",
                                    task_id="t")["button"] == {"replace_name": "已处理"}
    replaced = render.wecom_card_update(APPROVAL, user="li", agent_id=1, response_code="rc2", task_id="jxc_new")
    assert replaced["template_card"] == render.wecom_template_card(APPROVAL, "jxc_new")
    assert "button" not in replaced


def test_dingtalk_card_params_are_strings() -> None:
    params = render.dingtalk_card_params(APPROVAL)
    assert set(params) == {"title", "content", "buttons"} and all(isinstance(v, str) for v in params.values())
    assert (params["title"], params["content"]) == (NASTY, BODY)
    assert json.loads(params["buttons"]) == [
        {"text": "同意", "action": "approval:12:1:approve", "style": "primary"},
        {"text": "驳回 </", "action": "approval:12:1:reject", "style": "danger"},
        {"text": "转交给采购主管复核", "action": "approval:12:1:forward", "style": "default"}]
    assert render.dingtalk_card_params(Message("card", title="已同意"))["buttons"] == "[]"


def test_fallback_text_lists_the_buttons_and_where_to_click() -> None:
    text = render.card_text(APPROVAL, "dingtalk")
    assert text == (f"{NASTY}\n{BODY}\n可选操作：同意 / 驳回 </ / 转交给采购主管复核\n"
                    "请在钉钉中 jxcbot 发来的卡片上点击按钮办理。")
    assert render.card_text(APPROVAL, "wecom").endswith("请在企业微信「应用消息」里的这张卡片上点击按钮办理。")
    assert render.card_text(Message("card", title="通知", text="月报已生成"), "wecom") == "通知\n月报已生成"
    assert render.card_text(Message("card", text="只有正文"), "wecom") == "只有正文"


def test_fallback_text_gives_the_approve_links_when_every_button_has_one() -> None:
    card = Message("card", title="采购申请", buttons=APPROVAL.buttons[:2])
    links = {"approval:12:1:approve": "https://bot.example.com/approve/a.b",
             "approval:12:1:reject": "https://bot.example.com/approve/c.d"}
    assert render.card_text(card, "dingtalk", links) == (
        "采购申请\n可选操作（点击链接办理，链接仅限本人使用）：\n"
        "同意：https://bot.example.com/approve/a.b\n驳回 </：https://bot.example.com/approve/c.d")
    partial = render.card_text(card, "dingtalk", {"approval:12:1:approve": "https://x/approve/a"})
    assert "https://" not in partial and "可选操作：同意 / 驳回 </" in partial


def test_card_markdown() -> None:
    assert render.card_markdown(Message("card", title="通知", text="月度健康报告已生成"), "wecom") == \
        "**通知**\n月度健康报告已生成"
    md = render.card_markdown(APPROVAL, "wecom")
    assert md.startswith(f"**{NASTY}**\n{BODY}\n可选操作：同意 / 驳回 </ / 转交给采购主管复核\n")


def test_every_value_in_a_json_template_goes_through_tojson() -> None:
    """The JSON-safety rule of cards/templates: no {{ … }} in a .json template without a final tojson."""
    root = resources.files("cards").joinpath("templates")
    names = [f"{d.name}/{f.name}" for d in root.iterdir() if d.is_dir() for f in d.iterdir()
             if f.name.endswith(".json.j2")]
    assert sorted(names) == ["dingtalk/card_params.json.j2", "wecom/template_card.json.j2",
                             "wecom/update_card.json.j2"]
    for name in names:
        source = root.joinpath(name).read_text("utf-8")
        for expr in re.findall(r"{{(.*?)}}", source, re.S):
            assert re.search(r"\|\s*tojson\s*-?$", expr.strip()) or expr.strip() == '"," if not loop.last', \
                (name, expr)


text_st = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(title=text_st, body=text_st, labels=st.lists(text_st.filter(bool), min_size=1, max_size=6))
def test_any_text_renders_to_valid_json(title: str, body: str, labels: list[str]) -> None:
    card = Message("card", title=title, text=body,
                   buttons=tuple(Button(label, f"k{i}:{label}") for i, label in enumerate(labels)))
    tc = render.wecom_template_card(card, "t")
    assert [b["key"] for b in tc["button_list"]] == [b.key for b in card.buttons]
    if body:
        assert tc["sub_title_text"] == (body if len(body) <= 160 else body[:159] + "…")
    params = render.dingtalk_card_params(card)
    assert (params["title"], params["content"]) == (title, body)
    assert [b["text"] for b in json.loads(params["buttons"])] == labels


@pytest.mark.parametrize("platform", ["wecom", "dingtalk", "console"])
def test_fallback_for_every_platform_mentions_every_button(platform: str) -> None:
    text = render.card_text(APPROVAL, platform)
    assert all(b.label in text for b in APPROVAL.buttons) and "点击按钮" in text
