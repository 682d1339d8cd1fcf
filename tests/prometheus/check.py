"""Validates a Prometheus text exposition with the official Python client's parser.

Usage: python check.py <url>   (fetches the URL, e.g. http://127.0.0.1:3000/metrics)

Checks the content type, parses every family with
`prometheus_client.parser.text_string_to_metric_families` (which raises on
malformed text), checks that each histogram's buckets are cumulative and end
with +Inf equal to _count, then prints one line per family:
`family <name> <type> <samples>` and finally `all checks passed`.
Exits non-zero on the first failure.
"""

import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def fail(message):
    print(f"FAIL {message}")
    sys.exit(1)


def main():
    with urllib.request.urlopen(sys.argv[1]) as resp:
        content_type = resp.headers.get("content-type", "")
        text = resp.read().decode("utf-8")
    if not content_type.startswith("text/plain; version=0.0.4"):
        fail(f"content type {content_type!r}")
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as err:  # the parser raises ValueError and friends
        fail(f"parse error: {err!r}")
    if not families:
        fail("no metric families")
    for fam in families:
        if fam.type == "histogram":
            series = {}
            for s in fam.samples:
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                series.setdefault(key, {"buckets": [], "count": None})
                if s.name.endswith("_bucket"):
                    series[key]["buckets"].append((float(s.labels["le"]), s.value))
                elif s.name.endswith("_count"):
                    series[key]["count"] = s.value
            for key, v in series.items():
                counts = [c for _, c in v["buckets"]]
                if counts != sorted(counts):
                    fail(f"{fam.name}{key}: buckets not cumulative")
                if not v["buckets"] or v["buckets"][-1][0] != float("inf"):
                    fail(f"{fam.name}{key}: no +Inf bucket")
                if v["buckets"][-1][1] != v["count"]:
                    fail(f"{fam.name}{key}: +Inf bucket != _count")
        print(f"family {fam.name} {fam.type} {len(fam.samples)}")
    print("all checks passed")


if __name__ == "__main__":
    main()
