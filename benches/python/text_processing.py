"""Text split into words, counted, formatted and joined: str churn of many sizes."""

import sys
from collections import Counter

SCALE = 4 if sys.argv[1:] == ["quick"] else 1
words = [f"word{n % 5000}" for n in range(200_000 // SCALE)]
total = 0
for round_number in range(10):
    text = " ".join(words)
    counts = Counter(text.split())
    lines = [f"{word}: {count}" for word, count in counts.most_common()]
    total += len("\n".join(lines)) + len(text.upper())
print(total)
