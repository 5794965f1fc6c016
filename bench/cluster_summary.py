# Medians and ranges of bench/cluster_compare.sh's JSON lines (a file given as the argument,
# or stdin): per scenario and variant, one row per figure, "median (min–max, n)".
import json, statistics, sys
from collections import defaultdict
source = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
rows = [json.loads(l) for l in source if l.strip()]

def get(d, path):
    for k in path.split('.'):
        if isinstance(d, list):
            d = d[int(k)] if k.isdigit() and int(k) < len(d) else None
        else:
            d = d.get(k) if isinstance(d, dict) else None
    return d

def total_cpu_per(res, what):
    # all nodes' CPU (the one server's for plain) per delivery or per line sent
    c = res.get('cluster')
    if c:
        return c['nodes_cpu_us_per_delivery'] if what == 'delivery' else c['nodes_cpu_us_per_stream_message']
    per = res.get('server_cpu_us_per_delivery')
    if per is None:
        return None
    if what == 'delivery':
        return per
    lines = res['senders'] * res['messages'] if res['scenario'] == 'fanout' else None
    return per * res['deliveries'] / lines if lines else None

figures = [
    ('deliveries/s', lambda r: r.get('deliveries_per_sec'), '{:.0f}'),
    ('lines/s (stream messages/s)', lambda r: r['senders'] * r['messages'] / r['seconds'] if r.get('scenario') == 'fanout' and 'seconds' in r else None, '{:.0f}'),
    ('all nodes µs CPU / delivery', lambda r: total_cpu_per(r, 'delivery'), '{:.2f}'),
    ('all nodes µs CPU / line', lambda r: total_cpu_per(r, 'line'), '{:.0f}'),
] + [
    (f'node {k + 1}: clients/senders, µs CPU / delivery, / line',
     (lambda k: lambda r: None if get(r, f'cluster.nodes.{k}') is None else
      '{}/{}, {}, {:.0f}'.format(get(r, f'cluster.nodes.{k}.clients'), get(r, f'cluster.nodes.{k}.senders'),
                              'n/a' if get(r, f'cluster.nodes.{k}.cpu_us_per_delivery') is None else '{:.2f}'.format(get(r, f'cluster.nodes.{k}.cpu_us_per_delivery')),
                              get(r, f'cluster.nodes.{k}.cpu_us_per_stream_message')))(k), None)
    for k in range(3)
] + [
    ('nats-server µs CPU / line', lambda r: get(r, 'cluster.nats_cpu_us_per_stream_message'), '{:.1f}'),
    ('store commit mean ms (node 1)', lambda r: get(r, 'store_commits.mean_ms'), '{:.1f}'),
    ('store commits (node 1)', lambda r: get(r, 'store_commits.commits'), '{:.0f}'),
    ('latency p50 ms (all)', lambda r: get(r, 'latency.p50_us') / 1e3 if get(r, 'latency.p50_us') is not None else None, '{:.1f}'),
    ('latency p99 ms (all)', lambda r: get(r, 'latency.p99_us') / 1e3 if get(r, 'latency.p99_us') is not None else None, '{:.1f}'),
    ('cross-node p50 ms', lambda r: get(r, 'cluster.cross_node_latency.p50_us') / 1e3 if get(r, 'cluster.cross_node_deliveries') else None, '{:.1f}'),
    ('cross-node p99 ms', lambda r: get(r, 'cluster.cross_node_latency.p99_us') / 1e3 if get(r, 'cluster.cross_node_deliveries') else None, '{:.1f}'),
    ('lost', lambda r: r.get('lost'), '{:.0f}'),
]
groups = defaultdict(lambda: defaultdict(list))
loads = defaultdict(list)
for row in rows:
    groups[row['args']][row['version']].append(row['result'])
    loads[(row['args'], row['version'])].append(row.get('load1'))
for args, by in groups.items():
    print(f'## {args}')
    versions = list(by)
    print('| figure | ' + ' | '.join(versions) + ' |')
    print('|---' * (len(versions) + 1) + '|')
    for name, f, fmt in figures:
        cells = []
        for v in versions:
            xs = []
            for r in by[v]:
                if 'error' in r:
                    continue
                try:
                    x = f(r)
                except (KeyError, TypeError, ZeroDivisionError):
                    x = None
                if x is not None:
                    xs.append(x)
            if not xs:
                cells.append('–')
            elif fmt is None:
                cells.append('; '.join(xs))
            else:
                med = statistics.median(xs)
                cells.append(f'{fmt.format(med)} ({fmt.format(min(xs))}–{fmt.format(max(xs))})')
        if any(c != '–' for c in cells):
            print(f'| {name} | ' + ' | '.join(cells) + ' |')
    errors = {v: sum('error' in r for r in by[v]) for v in versions}
    print('| failed runs | ' + ' | '.join(str(errors[v]) for v in versions) + ' |')
    print('| 1-min load at the end | ' + ' | '.join(
        ', '.join(str(x) for x in loads[(args, v)]) for v in versions) + ' |')
    print()
