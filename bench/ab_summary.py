# Medians and ranges of bench/ab.sh's JSON lines (a file given as the argument, or stdin).
import json, statistics, sys
from collections import defaultdict
source = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
rows = [json.loads(l) for l in source if l.strip()]
metrics = {
    'fanout': [('deliveries_per_sec', 1e-6, 'M deliveries/s'), ('server_cpu_us_per_delivery', 1, 'µs CPU/delivery')],
    'connect': [('logins_per_sec', 1, 'logins/s'), ('server_cpu_us_per_login', 1, 'µs CPU/login')],
    'latency': [('latency.p50_us', 1e-3, 'p50 ms'), ('latency.p99_us', 1e-3, 'p99 ms')],
    'idle': [('server_rss_kib_per_connection', 1, 'KiB/conn')],
}
def get(d, path):
    for k in path.split('.'):
        d = d.get(k) if isinstance(d, dict) else None
    return d
groups = defaultdict(lambda: defaultdict(list))
lost = defaultdict(int)
# The versions in order of appearance: old and new (ab.sh), or native and ws (web_compare.sh).
versions = list(dict.fromkeys(r['version'] for r in rows))
for r in rows:
    res = r['result']
    groups[r['args']][r['version']].append(res)
    lost[(r['args'], r['version'])] += int(res.get('lost', 0) or 0)
# The server's store commits (bench/store_compare.sh), when a run has them.
commits = [('store_commits.mean_ms', 1, 'commit mean ms'), ('store_commits.p99_under_ms', 1, 'commit p99 under ms')]
for args, by in groups.items():
    sc = args.split()[0]
    has_commits = any(get(x, 'store_commits.commits') for xs in by.values() for x in xs)
    for path, scale, unit in metrics[sc] + (commits if has_commits else []):
        cells = []
        for v in versions:
            xs = [get(x, path) for x in by.get(v, [])]
            xs = [x * scale for x in xs if x is not None]
            if not xs:
                cells.append(f'{v}: -')
                continue
            med = statistics.median(xs)
            cells.append(f'{v}: median {med:.3g} (min {min(xs):.3g}, max {max(xs):.3g}, n={len(xs)})')
        print(f'{args} | {unit} | ' + ' | '.join(cells) + ' | lost ' + ' '.join(f'{v}={lost[(args, v)]}' for v in versions))
