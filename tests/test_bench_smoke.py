"""Smoke test of the benchmark scripts (--quick): they run and write the JSON fields the docs rely on. No timings asserted."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
os.environ.setdefault("JINA_HIDE_SURVEY", "1")


@pytest.mark.slow  # index_scale.py runs each store in a subprocess
@pytest.mark.timeout(120)
def test_index_scale_and_training_speed_quick(tmp_path, capsys):
    from bench import index_scale, training_speed

    index_scale.main(["--quick", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "index_scale.quick.json").read_text())
    assert {"machine", "config", "results", "targets"} <= set(data)
    assert {"cpu_model", "cpu_count", "ram_gb", "torch_threads", "date", "git_commit"} <= set(data["machine"])
    backends = {r["backend"] for r in data["results"]}
    assert backends == set(index_scale.BACKENDS)
    for r in data["results"]:
        assert "error" not in r, r
        assert {"size", "indexed", "build_s", "rss_growth_mb", "settings"} <= set(r)
        for s in r["settings"]:
            assert {"batch1", "batch32", "recall_at_10"} <= set(s)
            assert {"p50", "p95", "p99"} <= set(s["batch1"])
            assert 0.0 <= s["recall_at_10"] <= 1.0
            if r["backend"] in ("numpy", "torch", "store-memory"):
                assert s["recall_at_10"] == 1.0  # exact search agrees with the exact reference

    training_speed.main(["--quick", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "training_speed.quick.json").read_text())
    res = data["results"]
    for key in ("stage1", "stage2_reencode", "stage2_cached"):
        assert res[key]["samples_per_s"] > 0 and res[key]["steps"] >= 1
    assert {"cache_build", "stage2_cached_speedup"} <= set(res)
    out = capsys.readouterr().out
    assert "| width | N | backend |" in out and "| phase |" in out


def test_encoder_profile_sorts_samples_into_parts(tmp_path):
    from bench.encoder_profile import summarise

    raw = tmp_path / "spy.txt"
    raw.write_text(
        "thread (0x7f01): MainThread;_run_once (asyncio/base_events.py:1922);encode_query (mlcl/model/mlcl.py:160);forward (torch/nn/modules/conv.py:560) 60\n"
        "thread (0x7f01): MainThread;_run (mlcl_executor/pipeline.py:150);images_from_pixels (mlcl/model/mlcl.py:140) 5\n"
        "thread (0x7f01): MainThread;_run_once (asyncio/base_events.py:1922);select (selectors.py:468) 10\n"
        "thread (0x7f01): MainThread;encode_proto (mlcl_executor/encoder.py:222);items (mlcl_executor/proto_docs.py:98) 5\n"
        "thread (0x7f02): Thread-2 (_poll_wrapper);_poll_wrapper (grpc/aio/_server.py:10) 20\n"
    )
    out = summarise(raw)
    assert out["samples"] == 100
    assert out["share"] == {"model forward": 0.6, "pixels -> batch (normalise)": 0.05, "event loop waiting": 0.1,
                            "read / answer the request": 0.05, "other (jina, gRPC, asyncio)": 0.2}
    assert out["threads"] == {"MainThread": 0.8, "Thread-2 (_poll_wrapper)": 0.2}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_workload_quick_runs_every_stage(tmp_path, capsys):
    from bench import real_workload

    real_workload.main(["--quick", "--out-dir", str(tmp_path), "--precisions", "fp32", "bf16", "--parity"])
    data = json.loads((tmp_path / "real_workload.quick.json").read_text())
    assert data["photos"]["n"] == 6 and len(data["rows"]) == 2
    for row in data["rows"]:
        assert row["bare_forward"]["best"]["images_per_s"] > 0 and row["bare_decode_forward"]["images_per_s"] > 0
        assert row["encode"]["images"] == 6 and row["flow"]["index_images"] == 6
        assert {"p50", "p99"} <= set(row["flow"]["query"]) and row["flow"]["encoder_rss_mb"] > 0
        assert row["flow"]["start_s"] > 0 and row["checkpoint_mb"] > 0
    assert data["rows"][1]["parity"]["precision"] == "bf16" and "ok" in data["rows"][1]["parity"]
    assert "| backbone | precision | device |" in capsys.readouterr().out


@pytest.mark.timeout(300)
def test_draft_decoding_quick_measures_photos_and_checks_shapes_pngs(tmp_path, capsys):
    from bench import draft_decoding
    from helpers import shapes_test_split

    ds = shapes_test_split(n=50)
    draft_decoding.main(["--quick", "--out-dir", str(tmp_path), "--shapes", str(ds.root), "--split", "test"])
    data = json.loads((tmp_path / "draft_decoding.quick.json").read_text())
    row = data["rows"][0]
    assert row["model"] == "bundled" and 0.99 < row["cosine_min"] <= 1.0 + 1e-6 and row["psnr_db_min"] > 30
    assert row["decoded_sizes"] == ["150x200", "200x150"]  # 1600x1200 at 1/8
    shapes = data["shapes"]
    assert shapes["images"] > 0 and shapes["identical_eval_path"] == shapes["identical_served_path"] == shapes["images"]
    assert "| model | input px |" in capsys.readouterr().out


def test_reindex_bench_re_encodes_and_writes_its_row(tmp_path, capsys):
    from helpers import png_bytes

    from bench import reindex

    images = tmp_path / "images"
    images.mkdir()
    for i in range(6):
        (images / f"img{i}.png").write_bytes(png_bytes((40 * i, 30, 30)))
    row = reindex.main(["--n", "6", "--images", str(images), "--workers", "0", "--out-dir", str(tmp_path)])
    assert row["encoded"] == 6 and row["total_s"] > 0
    data = json.loads((tmp_path / "reindex.json").read_text())
    assert data["results"][0]["images"] == 6 and {"load_before", "load_after"} <= set(data["results"][0])
    assert "| images | backend |" in capsys.readouterr().out


@pytest.mark.slow  # a subprocess per mode
@pytest.mark.timeout(180)
def test_thumbnail_memory_quick_keeps_thumbnails_out_of_the_indexers_memory(tmp_path, capsys):
    from bench import thumbnail_memory

    thumbnail_memory.main(["--quick", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "thumbnail_memory.quick.json").read_text())
    rows = {r["mode"]: r for r in data["results"]}
    assert set(rows) == {"tags", "files", "none"} and all("error" not in r for r in rows.values()), rows
    assert rows["files"]["count"] == rows["tags"]["count"] == 3000 and rows["files"]["thumbnail_files_mb"] > 0
    thumb = rows["tags"]["thumbnail_uri_bytes_mean"]
    # in the tags a thumbnail costs about its size in RSS; as a file, far less than that
    assert rows["tags"]["rss_per_doc_bytes"] - rows["files"]["rss_per_doc_bytes"] > thumb / 2



@pytest.mark.slow  # `mlcl serve` in a subprocess
@pytest.mark.timeout(240)
def test_page_thumbnails_quick_loads_every_view_in_one_batched_request(tmp_path, capsys):
    from bench import page_thumbnails

    page_thumbnails.main(["--quick", "--users", "1", "4", "--ids", "20", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "page_thumbnails.quick.json").read_text())
    rows = {(r["mode"], r["users"]): r for r in data["results"]}
    assert set(rows) == {(m, u) for m in ("per-id", "batched") for u in (1, 4)}
    assert all(r["incomplete_views"] == 0 and r["views"] > 0 for r in rows.values()), rows  # every thumbnail came
    assert rows["per-id", 4]["flow_requests_per_view"] == 20 and rows["batched", 4]["flow_requests_per_view"] == 1
    assert "| mode | page views at once |" in capsys.readouterr().out
