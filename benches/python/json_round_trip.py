"""Nested documents encoded to JSON and decoded back, repeatedly."""

import json
import sys

SCALE = 4 if sys.argv[1:] == ["quick"] else 1

document = {
    "users": [
        {"id": n, "name": f"user-{n}", "scores": [n % 7, n % 11, n % 13], "active": n % 2 == 0}
        for n in range(20_000 // SCALE)
    ]
}
size = 0
for _ in range(12):
    text = json.dumps(document)
    document = json.loads(text)
    size += len(text)
print(size)
