#!/usr/bin/env python3
"""The import graph of src/: which top-level module uses which, the floors
they sit on, arrows that run back up, and loops between modules.

    scripts/import-graph.py              # summary; exit 1 on an upward arrow or a loop
    scripts/import-graph.py --edges      # and every module -> module arrow
    scripts/import-graph.py --src DIR    # another checkout's src/

A module is a top-level entry of src/ (a file or a folder). An arrow runs
up when a module uses one on a higher floor; siblings on one floor may not
use each other either.
"""
import os, re, sys
from collections import defaultdict

ROOT = (sys.argv[sys.argv.index('--src') + 1] if '--src' in sys.argv
        else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src'))
# Top to bottom; a module may use only modules on lower floors (or its own).
FLOORS = [
    ['main'],
    ['startup', 'doctor', 'seed', 'replay_cli'],
    ['http'],           # the HTTP door; it also serves the MCP door on /mcp
    ['mcp'],            # the MCP door
    ['service'],        # the use cases
    ['actors'],
    ['alarms'],         # the alarm board the alarms actor keeps
    ['supervision'],
    ['telemetry', 'durability'],
    ['config', 'redact'],
    ['domain'],
    ['codes'],
]
FLOOR = {m: i for i, ms in enumerate(FLOORS) for m in ms}

def module_of(path):
    rel = os.path.relpath(path, ROOT)
    top = rel.split(os.sep)[0]
    return top[:-3] if top.endswith('.rs') else top

def uses(text):
    text = re.sub(r'//[^\n]*', '', text)  # comments (doc links are not imports)
    found = set(re.findall(r'\bcrate::([a-z_]+)', text))
    found |= set(re.findall(r'\blakehouse::([a-z_]+)', text))
    # `use crate::{a, b::c}` groups
    for group in re.findall(r'crate::\{([^}]*)\}', text):
        found |= set(re.findall(r'(?:^|,)\s*([a-z_]+)', group))
    return found

edges = defaultdict(set)  # (from, to) -> files
for dirpath, _, files in os.walk(ROOT):
    for name in files:
        if not name.endswith('.rs'):
            continue
        path = os.path.join(dirpath, name)
        source = module_of(path)
        if source == 'lib':
            continue
        text = open(path, encoding='utf-8').read()
        for target in uses(text):
            if target != source and target in FLOOR:
                edges[(source, target)].add(os.path.relpath(path, ROOT))

# An arrow runs up when its target sits on a higher floor (smaller index),
# or sideways to a sibling on the same floor.
upward = sorted((a, b, sorted(f)) for (a, b), f in edges.items()
                if FLOOR[b] < FLOOR.get(a, 0))
sideways = sorted((a, b, sorted(f)) for (a, b), f in edges.items()
                  if FLOOR[b] == FLOOR.get(a, 0))

# loops: strongly connected components of the module graph
graph = defaultdict(set)
for (a, b) in edges:
    graph[a].add(b)
index, low, stack, on, sccs = {}, {}, [], set(), []
def strong(v, counter=[0]):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in graph[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))
for v in list(graph):
    if v not in index:
        strong(v)

print('floors, top to bottom:', ' -> '.join('/'.join(f) for f in FLOORS))
print(f'{len(edges)} module -> module arrows')
print(f'arrows that run back up: {len(upward)}')
for a, b, f in upward:
    print(f'  {a} -> {b}: {", ".join(f)}')
print(f'arrows between siblings on one floor: {len(sideways)}')
for a, b, f in sideways:
    print(f'  {a} -> {b}: {", ".join(f)}')
print(f'loops between modules: {len(sccs)}')
for comp in sccs:
    print('  ' + ' <-> '.join(comp))
if '--edges' in sys.argv:
    for (a, b), f in sorted(edges.items()):
        print(f'{a} -> {b} ({len(f)} files)')
sys.exit(1 if upward or sccs else 0)
