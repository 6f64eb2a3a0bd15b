"""RSS of a process predicting single texts one by one, with and without sequence padding to a multiple of 8.

    python -m benchmarks.runtime_rss BUNDLE ../shared/data/banking77/train.csv --texts 5000 --json out.json

Each setting runs in a fresh process holding only the light runtime; RSS is read from /proc every 500 texts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import csv, json, sys
import edgeft.runtime as runtime
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024
bundle, data, count, multiple = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
texts = [row['text'] for row in csv.DictReader(open(data))][:count]
predictor = runtime.load(bundle)
predictor._multiple = multiple  # 1: one input shape per text length (the behaviour before the fix)
series = []
for index, text in enumerate(texts):
    predictor.predict(text)
    if index % 500 == 0:
        series.append(round(rss(), 1))
series.append(round(rss(), 1))
print(json.dumps(series))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("data", help="a CSV with a `text` column")
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = {}
    for multiple in (1, 8):
        out = subprocess.run([sys.executable, "-c", CHILD, args.bundle, args.data, str(args.texts), str(multiple)],
                             capture_output=True, text=True, check=True).stdout
        series = json.loads(out.strip().splitlines()[-1])
        results[f"multiple_{multiple}"] = {"rss_mb_every_500": series, "growth_after_first_500": series[-1] / series[1] - 1}
        print(f"sequence multiple {multiple}: RSS {series[1]} MB after 500 texts -> {series[-1]} MB after "
              f"{args.texts} ({results[f'multiple_{multiple}']['growth_after_first_500']:+.1%})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"bundle": args.bundle, "texts": args.texts, **results}, handle, indent=2)


if __name__ == "__main__":
    main()
