"""Many short-lived small objects: tuples, lists, dicts and instances made and dropped."""

import sys

SCALE = 4 if sys.argv[1:] == ["quick"] else 1


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y


def churn(rounds):
    total = 0
    for n in range(rounds):
        points = [Point(i, n) for i in range(50)]
        pairs = [(p.x, p.y) for p in points]
        table = {p.x: [p.y] for p in points}
        total += len(pairs) + len(table)
    return total


print(churn(60_000 // SCALE))
