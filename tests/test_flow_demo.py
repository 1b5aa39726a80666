"""`mlcl demo` end to end (real Flow) on a small gallery with the test model."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from helpers import tiny_checkpoint
from mlcl_cli import main


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_runs_and_writes_a_contact_sheet(tmp_path, capsys):
    out = tmp_path / "sheet.png"
    rc = main(["demo", "--checkpoint", str(tiny_checkpoint()), "--gallery", "240", "--queries", "3",
               "--eval-queries", "20", "-k", "10", "--out", str(out), "--no-progress", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "indexed 240 images over gRPC" in printed or "indexed 24" in printed
    assert "recall@10 over 20 composed queries (gRPC)" in printed
    assert len(re.findall(r"^query \d+: reference ", printed, re.M)) == 3 and "  10. " in printed
    assert "query 1 over HTTP: same top-10 as over gRPC" in printed
    body = tmp_path / "sheet-query.json"  # the printed curl is whole: its body is this file
    assert re.search(rf"curl -s -X POST http://localhost:\d+/search -H 'Content-Type: application/json' -d @{re.escape(str(body))}$",
                     printed, re.M)
    request = json.loads(body.read_text())
    assert request["parameters"] == {"limit": 10} and request["data"][0]["image"].startswith("data:image/png;base64,")
    assert "Flow stopped" in printed
    with Image.open(out) as sheet:
        assert sheet.size[0] > 6 * 128 and sheet.size[1] > 3 * 128
