"""The procedural training stream of the shapes benchmark (mlcl.data.shapes.procedural)."""

from __future__ import annotations

import numpy as np

from mlcl.data.shapes.config import load_config
from mlcl.data.shapes.modify import apply
from mlcl.data.shapes.procedural import render_array, training_group
from mlcl.data.shapes.render import render


def test_groups_are_deterministic_and_distinct_per_index():
    a, b = training_group(1, 5), training_group(1, 5)
    assert a == b
    assert training_group(1, 6) != a and training_group(2, 5) != a


def test_group_holds_k_edits_and_hard_negatives_without_held_out_pairs():
    held = load_config().held_out_pairs
    for g in range(30):
        grp = training_group(0, g, k=4, target_siblings=2)
        assert len(grp.targets) == len(set(grp.targets)) == 4 and len(grp.captions) == 4
        for mod, tgt, negs in zip(grp.mods, grp.targets, grp.negatives):
            assert apply(grp.reference, mod) == tgt
            assert len(negs) == 2
            for n in negs:
                assert n != tgt and n != grp.reference and n not in grp.targets
                # the caption's cells are untouched: the negative still fits the text
                assert all(n.at(cell) == tgt.at(cell) for cell in mod.changed_cells())
            for scene in (grp.reference, tgt, *negs):
                assert not (scene.pairs() & held)


def test_render_array_matches_the_png_pixels():
    scene = training_group(0, 3).reference
    arr = render_array(scene, 64)
    assert arr.shape == (3, 64, 64) and arr.dtype == np.uint8
    assert np.array_equal(arr.transpose(1, 2, 0), np.asarray(render(scene, 64)))
