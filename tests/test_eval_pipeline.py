"""End-to-end evaluation (encode in batches, rank, summarise) on fixture trees
with a fake model whose rankings are computed by hand in test_eval_fakes."""

from __future__ import annotations

import json

import pytest

from mlcl.data.cirr import CIRR
from mlcl.eval.evaluate import evaluate, ranked_names
from mlcl.eval.report import format_table, metrics_json
from test_eval_fakes import CIRR_IMAGES, FakeModel, FakeShapes, write_cirr_fixture, write_fashioniq_fixture, write_shoes_fixture

KW = dict(batch_size=3, num_workers=0, chunk_size=2, progress=False)


def test_fashioniq_per_category_means_and_headline(tmp_path):
    root = write_fashioniq_fixture(tmp_path)
    res = evaluate(FakeModel(), "fashioniq", root=root, **KW)
    # dress ranks 1, 12 (reference kept, pessimistic ties); shirt 1; toptee 3
    assert res.metrics["dress/R@10"] == 50.0 and res.metrics["dress/R@50"] == 100.0
    assert res.metrics["shirt/R@10"] == 100.0 and res.metrics["toptee/R@10"] == 100.0
    assert res.metrics["R@10"] == pytest.approx(250 / 3)
    assert res.metrics["R@50"] == 100.0
    assert res.metrics["headline"] == pytest.approx((250 / 3 + 100) / 2)
    assert [(t["name"], t["queries"], t["gallery"]) for t in res.tasks] == [
        ("dress", 2, 12), ("shirt", 1, 3), ("toptee", 1, 3)]
    # --limit keeps the first query of each category; galleries stay whole
    res = evaluate(FakeModel(), "fashioniq", root=root, limit=1, **KW)
    assert res.metrics["dress/R@10"] == 100.0 and res.tasks[0]["gallery"] == 12


def test_cirr_recall_subset_recall_and_headline(tmp_path):
    root = write_cirr_fixture(tmp_path)
    model = FakeModel()
    res = evaluate(model, "cirr", root=root, **KW)
    # ranks (reference removed) 1, 2, 6; subset ranks 1, 2, 4
    assert res.outputs[0].ranks.tolist() == [1, 2, 6]
    assert res.outputs[0].subset_ranks.tolist() == [1, 2, 4]
    m = res.metrics
    assert (m["R@1"], m["R@5"], m["R@10"], m["R@50"]) == pytest.approx((100 / 3, 200 / 3, 100, 100))
    assert (m["Rsubset@1"], m["Rsubset@2"], m["Rsubset@3"]) == pytest.approx((100 / 3, 200 / 3, 200 / 3))
    assert m["headline"] == pytest.approx(50.0)
    # each unique image is encoded once, in batches of 3 (8 images: 3 + 3 + 2)
    assert model.seen_image_batches == [3, 3, 2]
    # the ranking lists exclude the reference
    names = ranked_names(res.outputs[0], 3)
    assert names[1] == ["dev-2-0-img2", "dev-3-0-img3", "dev-6-0-img6"]


def test_cirr_submission_files_shape(tmp_path):
    root = write_cirr_fixture(tmp_path)
    res = evaluate(FakeModel(), "cirr", root=root, split="test1", submission_dir=tmp_path / "sub", **KW)
    assert res.metrics == {}  # test1 has no targets
    recall_path, subset_path = res.submission
    assert recall_path.name == "recall_submission_mlcl_test1.json"
    assert subset_path.name == "recall_subset_submission_mlcl_test1.json"
    recall, subset = json.loads(recall_path.read_text()), json.loads(subset_path.read_text())
    assert recall["version"] == subset["version"] == "rc2"
    assert (recall["metric"], subset["metric"]) == ("recall", "recall_subset")
    assert set(recall) == set(subset) == {"version", "metric", "10", "11", "12"}
    ds = CIRR(root, "test1")
    for t in ds.triplets:
        top, top3 = recall[t["id"]], subset[t["id"]]
        # top-50 of an 8-image gallery without the reference = the other 7
        assert len(top) == 7 and t["reference"] not in top and set(top) <= set(ds.gallery)
        assert len(top3) == 3 and t["reference"] not in top3
        assert set(top3) <= set(t["members"]) - {t["reference"]}
    names = CIRR_IMAGES["test1"]
    assert recall["11"][:3] == [names[2], names[3], names[6]]
    assert subset["12"] == [names[5], names[6], names[1]]


def test_shoes_reference_excluded(tmp_path):
    root = write_shoes_fixture(tmp_path)
    res = evaluate(FakeModel(), "shoes", root=root, **KW)
    assert res.outputs[0].ranks.tolist() == [1, 2, 11]
    assert res.metrics == pytest.approx(
        {"R@1": 100 / 3, "R@10": 200 / 3, "R@50": 100.0, "headline": (100 / 3 + 200 / 3 + 100) / 3})


def test_shapes_scene_equality_several_hits(tmp_path):
    ds = FakeShapes(tmp_path)
    res = evaluate(FakeModel(), "shapes", ds=ds, **KW)
    assert res.split == "test"
    assert res.outputs[0].ranks.tolist() == [1, 2, 4]
    assert res.metrics == pytest.approx({"R@1": 100 / 3, "R@5": 100.0, "R@10": 100.0, "R@50": 100.0,
                                         "headline": 100 / 3})


def test_report_table_and_json(tmp_path):
    res = evaluate(FakeModel(), "shapes", ds=FakeShapes(tmp_path), **KW)
    obj = json.loads(metrics_json(res.metrics))
    assert list(obj) == ["R@1", "R@5", "R@10", "R@50", "headline"]
    assert obj["R@1"] == 33.3333
    table = format_table(res)
    assert "shapes / test" in table and "3 queries, gallery 8 images, reference excluded" in table
    assert "R@50" in table and "100.00" in table


def test_unknown_dataset_and_missing_root():
    with pytest.raises(ValueError, match="unknown dataset"):
        evaluate(FakeModel(), "css")
    with pytest.raises(ValueError, match="--data-root"):
        evaluate(FakeModel(), "cirr")
    with pytest.raises(ValueError, match="only for CIRR"):
        evaluate(FakeModel(), "shoes", submission_dir="x")


def test_real_model_api_end_to_end(tmp_path):
    """The real (random-init, tiny) MLCL model goes through the same pipeline."""
    import torch

    from mlcl.model import build_model

    torch.manual_seed(0)
    model = build_model("mlcl-tiny").eval()
    root = write_cirr_fixture(tmp_path)
    res = evaluate(model, "cirr", root=root, **KW)
    out = res.outputs[0]
    assert out.queries.shape == (3, model.embed_dim) and out.gallery.shape == (8, model.embed_dim)
    assert torch.allclose(out.queries.norm(dim=1), torch.ones(3), atol=1e-4)
    assert set(res.metrics) == {"R@1", "R@5", "R@10", "R@50", "Rsubset@1", "Rsubset@2", "Rsubset@3", "headline"}
    assert all(1 <= r <= 7 for r in out.ranks.tolist())  # 8 images minus the reference
    assert all(1 <= r <= 5 for r in out.subset_ranks.tolist())  # each set: 6 members minus the reference
    assert res.metrics["R@10"] == 100.0
    # The reported metrics are the recalls of the ranks the pipeline computed, whatever the random model ranks.
    for k in (1, 5):
        assert res.metrics[f"R@{k}"] == pytest.approx(100 * (out.ranks <= k).float().mean().item())
    for k in (1, 2, 3):
        assert res.metrics[f"Rsubset@{k}"] == pytest.approx(100 * (out.subset_ranks <= k).float().mean().item())


def test_feature_cache_skips_encoding_and_changes_nothing(tmp_path):
    """Models that share a frozen backbone reuse its features: same metrics, no second encoding."""
    class Counting(FakeModel):
        text_batches = 0

        def text_features(self, texts):
            self.text_batches += 1
            return super().text_features(texts)

    root = write_cirr_fixture(tmp_path)
    model = Counting()
    cache: dict = {}
    first = evaluate(model, "cirr", root=root, feature_cache=cache, **KW)
    calls = (len(model.seen_image_batches), model.text_batches)
    assert calls[0] > 0 and calls[1] > 0
    again = evaluate(model, "cirr", root=root, feature_cache=cache, **KW)
    assert (len(model.seen_image_batches), model.text_batches) == calls
    assert again.metrics == first.metrics == evaluate(FakeModel(), "cirr", root=root, **KW).metrics


def test_duplicate_gallery_names_keep_features_in_step(tmp_path):
    # Defect 3: gallery ['a','b','a','c'] used to give 'c' the features of another image.
    from mlcl.eval.evaluate import run_task
    from mlcl.eval.protocols import RetrievalTask
    from test_eval_fakes import write_image

    ids = {"a": 1, "b": 2, "c": 3, "r": 9}
    for n, i in ids.items():
        write_image(tmp_path / f"{n}.png", i)
    task = RetrievalTask(
        name="dup", gallery=["a", "b", "a", "c"], image_path=lambda n: tmp_path / f"{n}.png",
        query_ids=["q0", "q1"], references=["r", "r"], captions=["3", "2"],
        positives=[["c"], ["b"]], exclude=[["r"], ["r"]])
    assert task.gallery == ["a", "b", "c"] and task.extra["duplicate_gallery_names"] == 1
    out = run_task(FakeModel(), task, **{k: v for k, v in KW.items() if k != "progress"}, progress=False)
    assert out.ranks.tolist() == [1, 1]  # caption "3" points at c's own features


def test_shapes_breakdown_per_kind_and_object_count(tmp_path):
    ds = FakeShapes(tmp_path)
    kinds = ["add", "colour", "add"]
    for t, k, n in zip(ds.triplets, kinds, (1, 2, 1)):
        t["kind"], t["reference_scene"] = k, [{}] * n
    res = evaluate(FakeModel(), "shapes", ds=ds, **KW)
    # ranks 1, 2, 4 (see FakeShapes): add -> queries 0 and 2, colour -> query 1
    assert res.breakdown["kind"]["add"]["queries"] == 2
    assert res.breakdown["kind"]["add"]["R@1"] == 50.0 and res.breakdown["kind"]["add"]["R@5"] == 100.0
    assert res.breakdown["kind"]["colour"]["R@1"] == 0.0 and res.breakdown["kind"]["colour"]["R@5"] == 100.0
    assert list(res.breakdown["objects"]) == ["1", "2"]
    obj = json.loads(metrics_json(res.metrics, breakdown=res.breakdown))
    assert obj["breakdown"]["kind"]["add"]["queries"] == 2 and obj["R@1"] == pytest.approx(res.metrics["R@1"], abs=1e-3)
    assert "by modification kind" in format_table(res)
