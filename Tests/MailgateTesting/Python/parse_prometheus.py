#!/usr/bin/python3
"""What Python's prometheus_client (Debian's python3-prometheus-client)
makes of a Prometheus text exposition read from stdin: prints its metric
families as JSON (EndToEndTests' metrics suite). A text the parser refuses
makes it exit non-zero with the parser's error.

Usage: parse_prometheus.py < EXPOSITION
"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families

families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": family.name,
        "type": family.type,
        "samples": [{"name": s.name, "labels": dict(s.labels), "value": s.value} for s in family.samples],
    })
print(json.dumps(families))
