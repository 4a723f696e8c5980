"""What a scanned code says (EAN-13 check digit, WeCom's type prefix, GS1 batch and expiry) and the scan rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from core.config import load_config
from core.errors import DomainError
from core.ledger.scan import ean13_ok, parse_scan, require_scanned
from core.models import Product

CREAM = Product(sku="RM-CREAM", name="淡奶油", barcode="6930180079197", batch_tracked=True, stock_unit="kg")
BOX = Product(sku="PK-BOX6", name="6寸蛋糕盒", barcode="6941481108660", batch_tracked=False, stock_unit="个")


def test_ean13_check_digit():
    assert ean13_ok("6930180079197") and ean13_ok("6941481108660")
    assert not ean13_ok("6930180079198") and not ean13_ok("693018007919") and not ean13_ok("69301800791x7")


@pytest.mark.parametrize(("raw", "barcode", "batch", "expiry"), [
    ("6930180079197", "6930180079197", "", None),
    ("EAN_13,6930180079197", "6930180079197", "", None),                      # WeCom ScanResult with its type
    ("CODE_128,JXC-0001", "JXC-0001", "", None),
    ("(01)06930180079197(10)CR1101(17)270501", "6930180079197", "CR1101", date(2027, 5, 1)),
    ("(01)06930180079197(17)270500(10)CR1101", "6930180079197", "CR1101", date(2027, 5, 28)),  # day 00
])
def test_parse_scan(raw, barcode, batch, expiry):
    s = parse_scan(raw)
    assert (s.barcode, s.batch, s.expiry) == (barcode, batch, expiry)


@pytest.mark.parametrize("raw", ["(10)CR1101", "", "两个 字"])
def test_unreadable(raw):
    with pytest.raises(DomainError) as e:
        parse_scan(raw)
    assert e.value.code == "SCAN_UNREADABLE" and e.value.fix_zh


def test_a_wrong_check_digit_is_flagged():
    assert parse_scan("6930180079197").check_ok and parse_scan("CODE_128,JXC-0001").check_ok
    assert not parse_scan("6930180079198").check_ok


def test_the_scan_rule_per_platform():
    s = load_config(None, env={})
    assert require_scanned(s, "borrow", "wecom", "x", CREAM, "", scanned=True) == "scan"
    with pytest.raises(DomainError) as e:
        require_scanned(s, "borrow", "wecom", "6930180079197", CREAM, "CR1101", scanned=False)
    assert "扫码" in e.value.fix_zh
    # DingTalk and the console: the exact barcode and, batch-tracked, the batch
    assert require_scanned(s, "borrow", "dingtalk", "6930180079197", CREAM, "CR1101", scanned=False) == "text"
    assert require_scanned(s, "borrow", "console", "6941481108660", BOX, "", scanned=False) == "text"
    for query, batch in (("奶油", "CR1101"), ("RM-CREAM", "CR1101"), ("6930180079197", "")):
        with pytest.raises(DomainError):
            require_scanned(s, "borrow", "console", query, CREAM, batch, scanned=False)
    # a type not in [scan] required takes any line
    assert require_scanned(replace(s, scan_required=frozenset()), "borrow", "wecom", "奶油", CREAM, "",
                           scanned=False) == "text"
