"""/metrics on the admin app: Prometheus text for a viewer token, refused without one."""

from __future__ import annotations


def test_metrics_need_a_token_and_report_the_channels(site):
    assert site.api(None).get("/metrics").status_code == 401
    answer = site.api("viewer").get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    text = answer.get_data(as_text=True)
    assert "# TYPE" in text and 'channel="intake"' in text
    assert "MRN-A1" not in text  # counts only, no patient data
