"""FashionIQ, CIRR and Shoes training triplets: thin wrappers of mlcl.data's loaders.

Images are decoded, preprocessed and (for SSCL) augmented per item, in
DataLoader workers (`run.num_workers`).
"""

from __future__ import annotations

from typing import Any

from training.datasets.base import TripletDataset


class FashionIQTriplets(TripletDataset):
    """Training draws one of the four caption variants with equal chance; the
    feature cache encodes all four."""

    dataset_name = "fashioniq"

    def captions_of(self, i: int) -> list[str]:
        from mlcl.data.captions import fiq_all_variants

        return fiq_all_variants(self.triplets[i]["captions"])

    def caption_mode(self) -> str:
        return "fiq-4-variants"


class CIRRTriplets(TripletDataset):
    dataset_name = "cirr"


class ShoesTriplets(TripletDataset):
    dataset_name = "shoes"


def load_source(name: str, root: Any, split: str, options: dict | None = None) -> Any:
    """The plain loader of a real data set's split."""
    if root in (None, "", "???"):
        raise ValueError(
            f"datasets.{name}.root is not set: pass --data-root DIR (or --options datasets.{name}.root=DIR); "
            f"{name} cannot be downloaded by mlcl, see docs/training.md"
        )
    if name == "fashioniq":
        from mlcl.data.fashioniq import FashionIQ

        categories = (options or {}).get("categories")
        return FashionIQ(root, split, tuple(categories)) if categories else FashionIQ(root, split)
    if name == "cirr":
        from mlcl.data.cirr import CIRR

        return CIRR(root, split)
    if name == "shoes":
        from mlcl.data.shoes import Shoes

        return Shoes(root, split)
    raise ValueError(f"unknown data set {name!r}")
