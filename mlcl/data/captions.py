"""FashionIQ caption variants (two relative captions per triplet).

Follows the public code of CLIP4Cir / MLCL (`generate_randomized_fiq_caption`):
each caption is stripped of the characters ".?, " at both ends; a variant is
capitalised with Python's `str.capitalize()` (first letter upper case, the
rest of the first caption lower case, exactly as the authors' code does);
in "c1 and c2" only the leading caption is capitalised.

* training: one of four variants with equal chance
  "C1 and c2", "C2 and c1", "C1", "C2";
* evaluation: always "C1 and c2".
"""

from __future__ import annotations

import random
from typing import Sequence

STRIP_CHARS = ".?, "
# The four training variants, as (first caption index, second caption index or None).
TRAIN_VARIANTS: tuple[tuple[int, int | None], ...] = ((0, 1), (1, 0), (0, None), (1, None))


def _clean(caption: str) -> str:
    return caption.strip(STRIP_CHARS)


def _check(captions: Sequence[str]) -> None:
    if isinstance(captions, str) or len(captions) != 2:
        raise ValueError(f"a FashionIQ triplet has exactly two captions, got {captions!r}")


def fiq_caption_variant(captions: Sequence[str], variant: int) -> str:
    """Variant 0..3 of `TRAIN_VARIANTS`: "C1 and c2", "C2 and c1", "C1", "C2"."""
    _check(captions)
    first, second = TRAIN_VARIANTS[variant]
    text = _clean(captions[first]).capitalize()
    if second is not None:
        text = f"{text} and {_clean(captions[second])}"
    return text


def fiq_all_variants(captions: Sequence[str]) -> list[str]:
    """All four training variants, in `TRAIN_VARIANTS` order."""
    return [fiq_caption_variant(captions, v) for v in range(len(TRAIN_VARIANTS))]


def fiq_train_caption(captions: Sequence[str], rng: random.Random | None = None) -> str:
    """One training variant drawn with equal chance (1/4 each)."""
    variant = (rng or random).randrange(len(TRAIN_VARIANTS))
    return fiq_caption_variant(captions, variant)


def fiq_eval_caption(captions: Sequence[str]) -> str:
    """The evaluation caption: "C1 and c2"."""
    return fiq_caption_variant(captions, 0)
