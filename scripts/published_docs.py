"""Regenerate (or check) the result tables of README.md and docs/*.md from results/published/.

    python scripts/published_docs.py            # rewrite every `<!-- published EXPERIMENT KIND -->` block
    python scripts/published_docs.py --check    # exit 1 naming each block that drifted (what the test does)

The blocks are rendered by harness.report.published with the report's own functions, so they say
exactly what `harness report results/published` says.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.report import published  # noqa: E402

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block drifted")
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "published")
    args = ap.parse_args(argv)
    rendered = published.blocks(args.results)
    bad = 0
    for doc in DOCS:
        changed = published.drift(doc, rendered) if args.check else published.sync(doc, rendered)
        for block in changed:
            print(f"{doc.relative_to(ROOT)}: {block} {'drifted' if args.check else 'updated'}")
            bad += 1
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
