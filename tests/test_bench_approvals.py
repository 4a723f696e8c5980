"""bench.approvals on a small run: its own checks hold (every document posted once, every clicker's card updated,
no failed click) and it reports the figures the README quotes. Speed is not asserted."""

from __future__ import annotations

import json

from bench import approvals


def test_a_small_run_posts_every_document_once_and_reports_its_figures(capsys):
    assert approvals.main(["--docs", "3", "--senders", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["clicks"] == 9 and result["posted_events"] == 3 and result["discrepancy_moves"] == 3
    assert result["all_posted_once"] and result["every_clicker_card_updated"] and result["errors"] == 0
    for key in ("clicks_per_s_acked", "click_ack_ms_p99", "card_update_ms_p99", "bare_per_s", "ratio"):
        assert result[key] is not None and result[key] > 0, key
