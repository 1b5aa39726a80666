"""What the shipped shapes recipe's training streams share with the evaluation splits.

    .venv/bin/python scripts/shapes_overlap.py                  # the shipped recipe, seed-0 and unseen-seed splits
    .venv/bin/python scripts/shapes_overlap.py --json out.json   # also write the report
    .venv/bin/python scripts/shapes_overlap.py --quick 2000      # only the first 2,000 groups of each stream

The streams are read from the shipped configs (training/configs/shapes/):
stage 1 draws `procedural.groups` x `run.max_epoch` groups of its seed, a
stage-2 run caches `procedural.groups` groups of its own seed.  No pixel is
rendered: only scene keys and captions are regenerated.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlcl.data.shapes.config import EVAL_SPLITS, load_config  # noqa: E402
from mlcl.data.shapes.overlap import StreamSpec, overlap_report, streams_from_configs  # noqa: E402

CONFIGS = ROOT / "training" / "configs" / "shapes"


def shipped_streams(configs: Path = CONFIGS) -> list[StreamSpec]:
    return streams_from_configs(sorted(configs.glob("*.yaml")))


def eval_splits() -> dict[str, tuple[int, str]]:
    """Every evaluation split training must not touch: the exclusion seeds' val, test, novel, hard."""
    seeds = load_config().training_exclusion_seeds
    return {f"{split} (seed {seed})": (seed, split) for seed in seeds for split in EVAL_SPLITS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--quick", type=int, metavar="N", help="only the first N groups of each stream")
    ap.add_argument("--without-exclusion", action="store_true",
                    help="draw the streams without excluding evaluation scenes (what the exclusion removes)")
    args = ap.parse_args()
    streams = shipped_streams()
    if args.quick or args.without_exclusion:
        streams = [StreamSpec(**{**s.__dict__, "groups": min(s.groups, args.quick or s.groups),
                                 "exclude": not args.without_exclusion}) for s in streams]
    t0 = time.time()
    report = overlap_report(eval_splits(), streams, progress=True)
    report["date"] = datetime.datetime.now().isoformat(timespec="minutes")
    report["seconds"] = round(time.time() - t0, 1)
    report["load1"] = float(Path("/proc/loadavg").read_text().split()[0])
    tr = report["training"]
    print(f"training: {', '.join(f'{s.name} (seed {s.seed}, {s.groups} groups)' for s in streams)}: "
          f"{tr['triplets']} triplets, {tr['distinct_scenes']} distinct scenes, "
          f"{tr['repeated_pairs']:.1f} % of triplets repeat an earlier (reference, target) pair")
    for st in tr["per_stream"]:
        print(f"  {st['name']} (seed {st['seed']}): {st['triplets']} triplets, {st['repeat_own']:.1f} % repeat a pair "
              f"of the same stream, {st['in_earlier_streams']:.1f} % a pair of the streams above")
    print("| split | queries | pair in training | same caption | reference in training | target in training "
          "| gallery images in training | shared scenes |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in report["splits"].items():
        print(f"| {name} | {r['queries']} | {r['pair_in_training']:.1f} % | {r['same_caption']:.1f} % "
              f"| {r['reference_in_training']:.1f} % | {r['target_in_training']:.1f} % "
              f"| {r['gallery_images_in_training']:.1f} % | {r['shared_scenes']} of {r['gallery_scenes']} |")
    print(f"({report['seconds']} s, load {report['load1']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
