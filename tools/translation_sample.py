"""Write the small Tatoeba eng-fra sample shipped in ``tasks/samples/translation/`` (fresh clones lack ../shared/data).

The sample is a seeded random subset of the shared train and dev files, in their original
order, so ``lstm-suite translation train`` works on a clone without the shared data:

```sh
python tools/translation_sample.py --shared ../shared/data/translation --out tasks/samples/translation
```
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def sample_lines(path: Path, count: int, seed: int) -> list[str]:
    """``count`` lines of ``path`` chosen with ``random.Random(seed)``, kept in file order."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if line.strip()]
    chosen = sorted(random.Random(seed).sample(range(len(lines)), min(count, len(lines))))
    return [lines[i] for i in chosen]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data/translation"))
    parser.add_argument("--out", type=Path, default=Path("tasks/samples/translation"))
    parser.add_argument("--train-pairs", type=int, default=3000)
    parser.add_argument("--dev-pairs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", args.train_pairs), ("dev", args.dev_pairs)):
        lines = sample_lines(args.shared / f"eng-fra.{name}.tsv", count, args.seed)
        (args.out / f"eng-fra.{name}.tsv").write_text("".join(lines), encoding="utf-8")
        print(f"{args.out / f'eng-fra.{name}.tsv'}: {len(lines)} pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
