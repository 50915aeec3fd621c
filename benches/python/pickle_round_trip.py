"""Object graphs pickled and unpickled, repeatedly."""

import pickle
import sys

SCALE = 4 if sys.argv[1:] == ["quick"] else 1

graph = [{"key": str(n), "values": list(range(n % 20)), "pair": (n, str(n))} for n in range(40_000 // SCALE)]
size = 0
for _ in range(15):
    data = pickle.dumps(graph, protocol=pickle.HIGHEST_PROTOCOL)
    graph = pickle.loads(data)
    size += len(data)
print(size)
