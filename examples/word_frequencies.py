"""A small real workload for `tallymalloc run`: builds a text of a million words, counts them,
keeps the commonest bigrams, and writes the result as JSON to stdout's length only."""

import collections
import json
import random

random.seed(7)
vocabulary = ["".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(2, 9)))
              for _ in range(20_000)]
words = random.choices(vocabulary, weights=[1 / (rank + 1) for rank in range(len(vocabulary))], k=1_000_000)
text = " ".join(words)
counts = collections.Counter(text.split())
bigrams = collections.Counter(zip(words, words[1:]))
report = {
    "words": len(words),
    "distinct": len(counts),
    "top": counts.most_common(20),
    "top_bigrams": [[" ".join(pair), n] for pair, n in bigrams.most_common(20)],
}
print(len(json.dumps(report)), "bytes of JSON about", len(words), "words")
