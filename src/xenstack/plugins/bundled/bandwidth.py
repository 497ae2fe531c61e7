#!/usr/bin/env python3
"""xenstack's ``bandwidth.py``: per-VIF byte counters of dom0 (os-xenapi's plug-in).

``fetch_all_bandwidth()`` (a pickled call) reads ``/proc/net/dev`` and answers
``{domid: {devid: {"bw_in": bytes, "bw_out": bytes}}}`` for the interfaces named
``vif<domid>.<devid>``, as backends name a guest's interfaces; ``bw_in`` is what the guest
received (the dom0 side transmitted), ``bw_out`` what it sent.
"""

import re

import dom0_utils

VIF = re.compile(r"vif(\d+)\.(\d+)")


def _counters(text):
    out = {}
    for line in text.splitlines()[2:]:
        name, _, fields = line.partition(":")
        match = VIF.fullmatch(name.strip())
        numbers = fields.split()
        if match is None or len(numbers) < 9:
            continue
        domid, devid = match.groups()
        received, transmitted = int(numbers[0]), int(numbers[8])
        out.setdefault(domid, {})[devid] = {"bw_in": transmitted, "bw_out": received}
    return out


def fetch_all_bandwidth(session):
    with open("/proc/net/dev") as fh:
        return _counters(fh.read())


if __name__ == "__main__":
    dom0_utils.register_plugin_calls(fetch_all_bandwidth)
