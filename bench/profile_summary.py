"""Summarise a py-spy ``raw`` (collapsed stacks) profile: the functions with the most samples,
self and inclusive, per thread, so a profile can be read in a terminal and quoted in
bench/RESULTS.md.

    .venv/bin/pannier bench --database mysql --profile /tmp/engine.txt
    .venv/bin/python bench/profile_summary.py /tmp/engine.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        threads[frames[0]] += count
        names = [short(f) for f in frames[1:]]
        if names:
            self_time[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    print(f"{total} samples")
    for title, counter in (("threads", threads), ("self", self_time), ("inclusive", inclusive)):
        print(f"\n{title}:")
        for name, count in counter.most_common(args.top):
            print(f"  {100 * count / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
