"""reconciliation.report: the run's breaks drawn as real PNG charts (matplotlib, Agg), one by
class and one by day, embedded in the HTML page or linked from it."""

from __future__ import annotations

import base64
import io
import re
import struct
from typing import Any

from matplotlib.image import imread

from reconciliation import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def a_break(n: int, cls: str, created: int) -> dict[str, Any]:
    return {"id": n, "class": cls, "business_key": f"dep_{n}", "amount": 100 * n,
            "currency": "USD", "status": "open", "created_at": "2026-03-04T10:00:00+00:00",
            "evidence": {"detail": f"detail {n}", "ours": [{"created": created}],
                         "gateway": [], "ledger": []}}


BREAKS = [a_break(1, "payout_missing", 1_772_600_000),          # 2026-03-04
          a_break(2, "payout_missing", 1_772_700_000),          # 2026-03-05
          a_break(3, "dispute", 1_772_700_100),
          a_break(4, "fee_mismatch", 1_772_800_000)]            # 2026-03-06
RUN = {"id": "reconciliation-abc", "provider": "stripe", "verdict": "breaks",
       "window_start": "2026-03-04T00:00:00+00:00", "window_end": "2026-03-07T00:00:00+00:00",
       "items": 10, "matched": 6, "match_rate_by_count": 0.6, "match_rate_by_amount": 0.7,
       "pending": 0, "repaired": 0, "fees_booked": 2, "residual": {"USD": 900}}


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, which must come first."""
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_real_png(data: bytes) -> None:
    width, height = png_size(data)
    assert width >= 300 and height >= 100
    assert len(data) > 2_000                       # drawn, not an empty canvas
    assert data.endswith(b"IEND\xaeB`\x82")
    pixels = imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (height, width)


def test_the_charts_are_two_real_pngs_one_by_class_one_by_day():
    charts = report.charts(BREAKS)
    assert list(charts) == [report.BY_CLASS, report.BY_DAY]
    for data in charts.values():
        assert_real_png(data)
    assert report.breaks_by_class(BREAKS) == {"dispute": 1, "fee_mismatch": 1,
                                              "payout_missing": 2}
    assert report.breaks_by_day(BREAKS) == {"2026-03-04": 1, "2026-03-05": 2,
                                            "2026-03-06": 1}


def test_a_run_without_breaks_still_gets_both_charts():
    charts = report.charts([])
    assert len(charts) == 2
    for data in charts.values():
        assert_real_png(data)


def test_the_html_page_embeds_the_two_charts_as_base64_pngs():
    page = report.html_report(RUN, BREAKS)
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 2
    for data in embedded:
        assert_real_png(base64.b64decode(data, validate=True))
    assert "<svg" not in page
    assert "reconciliation-abc: breaks" in page and "payout_missing" in page


def test_the_html_page_links_charts_written_beside_it():
    page = report.html_report(RUN, BREAKS, links={report.BY_CLASS: "r-class.png",
                                                  report.BY_DAY: "r-day.png"})
    assert re.findall(r'<img src="([^"]+)"', page) == ["r-class.png", "r-day.png"]
    assert "base64" not in page
