#!/usr/bin/env python3
"""xenstack's ``dom0_plugin_version.py``: the version of the dom0 plug-ins' protocol.

``get_version()`` (os-xenapi's pickled call) answers ``"2.1"``: the plug-ins here speak
os-xenapi 0.3.x's protocol, whose clients check this before anything else.
"""

import dom0_utils

PLUGIN_VERSION = "2.1"


def get_version(session):
    return PLUGIN_VERSION


if __name__ == "__main__":
    dom0_utils.register_plugin_calls(get_version)
