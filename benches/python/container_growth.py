"""Dicts, lists, sets and strings grown to large sizes and dropped."""

import sys

SCALE = 4 if sys.argv[1:] == ["quick"] else 1
total = 0
for round_number in range(8):
    mapping = {}
    items = []
    seen = set()
    text = []
    for n in range(300_000 // SCALE):
        mapping[n] = n * round_number
        items.append(str(n))
        seen.add(n * 3)
        text.append("x" * (n % 40))
    total += len(mapping) + len(items) + len(seen) + len("".join(text))
print(total)
