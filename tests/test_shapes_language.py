"""Unit tests of the shapes benchmark's scenes, referring expressions and phrasing."""

from __future__ import annotations

import random

import pytest

from mlcl.data.shapes.config import load_config
from mlcl.data.shapes.modify import Modification, apply, options, random_scene, sample_modification
from mlcl.data.shapes.phrasing import CaptionError, all_captions, caption, interpret, parse_caption
from mlcl.data.shapes.refer import CANDIDATE_ATTRIBUTE_SETS, minimal_expression
from mlcl.data.shapes.scene import Obj, Scene

S = Scene.from_key


def test_scene_key_is_canonical_and_round_trips():
    a = Scene([Obj(4, "red", "circle", "small"), Obj(0, "blue", "square", "large")])
    b = Scene([Obj(0, "blue", "square", "large"), Obj(4, "red", "circle", "small")])
    assert a == b and a.key == b.key == "0:large-blue-square|4:small-red-circle"
    assert Scene.from_key(a.key) == a and Scene.from_json(a.to_json()) == a
    assert a != a.with_object(Obj(4, "red", "circle", "large"))
    with pytest.raises(ValueError, match="share a cell"):
        Scene([Obj(1, "red", "circle", "small"), Obj(1, "blue", "circle", "small")])


@pytest.mark.parametrize(
    "key, cell, expected",
    [
        ("0:large-red-circle|4:small-blue-square", 0, "the circle"),
        ("0:large-red-circle|4:small-blue-circle", 0, "the red circle"),
        ("0:large-red-circle|4:small-red-circle", 0, "the large circle"),  # size alone suffices
        ("0:large-red-circle|4:small-red-circle|8:large-blue-circle", 0, "the large red circle"),
        # Twins (same colour, shape, size) need a position; a column is enough here.
        ("0:small-red-circle|5:small-red-circle", 0, "the circle on the left"),
        ("0:small-red-circle|5:small-red-circle|3:small-blue-circle", 0, "the circle at the top"),
        ("0:small-red-circle|5:small-red-circle|3:small-blue-circle|1:small-blue-circle", 0,
         "the red circle on the left"),
        # Same column and same row as other circles: the full cell.
        ("0:small-red-circle|3:small-red-circle|1:small-red-circle", 0, "the circle in the top left"),
    ],
)
def test_minimal_referring_expressions(key, cell, expected):
    scene = S(key)
    expr = minimal_expression(scene, scene.at(cell))
    assert expr.text() == expected
    assert expr.referents(scene) == [scene.at(cell)]


def _brute_force_minimal_count(scene: Scene, obj: Obj) -> tuple[bool, int]:
    """(needs position, fewest attributes) by trying every candidate attribute set."""
    from mlcl.data.shapes.refer import expression_for

    unique = [a for a in CANDIDATE_ATTRIBUTE_SETS if expression_for(obj, a).referents(scene) == [obj]]
    no_pos = [a for a in unique if not {"row", "column"} & set(a)]
    best = no_pos if no_pos else unique
    return (not no_pos, min(len(a) for a in best))


def test_minimal_expression_is_unique_and_minimal_on_random_scenes():
    rng = random.Random(7)
    for _ in range(400):
        scene = random_scene(rng, rng.randint(1, 5))
        for obj in scene:
            expr = minimal_expression(scene, obj)
            assert expr.referents(scene) == [obj]
            uses_pos = expr.row is not None or expr.column is not None
            assert (uses_pos, expr.n_attributes) == _brute_force_minimal_count(scene, obj)


def test_apply_each_kind():
    ref = S("0:large-red-circle|4:small-blue-square")
    red = ref.at(0)
    assert apply(ref, Modification("colour", red, "green")).key == "0:large-green-circle|4:small-blue-square"
    assert apply(ref, Modification("shape", red, "triangle")).key == "0:large-red-triangle|4:small-blue-square"
    assert apply(ref, Modification("size", red, "small")).key == "0:small-red-circle|4:small-blue-square"
    assert apply(ref, Modification("move", red, 8)).key == "4:small-blue-square|8:large-red-circle"
    assert apply(ref, Modification("remove", red)).key == "4:small-blue-square"
    added = apply(ref, Modification("add", Obj(2, "cyan", "square", "large")))
    assert added.key == "0:large-red-circle|2:large-cyan-square|4:small-blue-square"
    with pytest.raises(ValueError):
        apply(ref, Modification("add", Obj(4, "cyan", "square", "large")))  # occupied
    with pytest.raises(ValueError):
        apply(ref, Modification("move", red, 4))  # onto an object
    with pytest.raises(ValueError):
        apply(S("0:large-red-circle"), Modification("remove", S("0:large-red-circle").at(0)))  # empty scene


def test_options_respect_constraints():
    cfg = load_config()
    ref = S("0:large-red-circle|4:small-blue-square")
    held = cfg.held_out_pairs
    for kind in cfg.kinds:
        for m in options(ref, kind, forbidden=held):
            assert not (apply(ref, m).pairs() & held)
        for m in options(ref, kind, protected={0}):
            assert 0 not in m.changed_cells()
    for kind in cfg.kinds:
        for m in options(ref, kind, require=held):
            assert len(apply(ref, m).pairs() & held) == 1
    assert options(ref, "size", require=held) == [] and options(ref, "move", require=held) == []


def test_sample_modification_covers_every_kind_and_phrasing():
    cfg = load_config()
    rng = random.Random(1)
    seen_kinds, seen_texts = set(), {k: set() for k in cfg.kinds}
    for _ in range(600):
        scene = random_scene(rng, rng.randint(1, 5))
        mod = sample_modification(rng, scene, cfg.kinds)
        text = caption(mod, scene, rng)
        seen_kinds.add(mod.kind)
        seen_texts[mod.kind].add(text.split(" the ")[0] if " the " in text else text[:6])
    assert seen_kinds == set(cfg.kinds)
    assert all(len(t) >= 3 for t in seen_texts.values()), seen_texts  # several phrasings per kind


def test_every_phrasing_parses_back_to_its_modification():
    cfg = load_config()
    rng = random.Random(3)
    n = 0
    for _ in range(300):
        scene = random_scene(rng, rng.randint(1, 5))
        for kind in cfg.kinds:
            mod = sample_modification(rng, scene, [kind])
            if mod is None:
                continue
            texts = all_captions(mod, scene)
            assert len(texts) == len(cfg.templates[kind]) >= 3
            for text in texts:
                assert len(parse_caption(text)) == 1, text
                assert interpret(text, scene) == mod, text
                n += 1
    assert n > 3000


def test_issue_examples_and_ambiguity_errors():
    ref = S("0:large-red-circle|4:small-blue-square|8:small-red-circle")
    mod = interpret("make the large red circle blue", ref)
    assert apply(ref, mod).key == "0:large-blue-circle|4:small-blue-square|8:small-red-circle"
    assert interpret("change the colour of the large red circle to blue", ref) == mod
    assert interpret("the large red circle should be blue", ref) == mod
    add = interpret("add a large green square in the top right", ref)
    assert add == Modification("add", Obj(2, "green", "square", "large"))
    with pytest.raises(CaptionError, match="matches 2 objects"):
        interpret("make the red circle blue", ref)  # two red circles: ambiguous
    with pytest.raises(CaptionError, match="matches 0 objects"):
        interpret("make the triangle blue", ref)
    with pytest.raises(CaptionError, match="0 readings"):
        interpret("do something nice", ref)
