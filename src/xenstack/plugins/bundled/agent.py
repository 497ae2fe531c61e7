#!/usr/bin/env python3
"""xenstack's ``agent.py``: nova's guest agent protocol over XenStore (os-xenapi's plug-in).

Each call names a request ``id``, the guest's ``dom_id`` and a ``timeout`` (seconds). The
plug-in writes the request, JSON ``{"name": ..., "value": ...}``, to
``/local/domain/<dom_id>/data/host/<id>`` and waits for the guest's agent to answer in
``data/guest/<id>`` (JSON ``{"returncode": ..., "message": ...}``), which it removes and
answers as is. With no answer in time it fails with ``TIMEOUT: ...`` (nova's AgentTimeout).

Functions (and their request names): ``version`` (``version``), ``key_init`` (``keyinit``,
``pub``), ``password`` (``password``, ``enc_pass``), ``resetnetwork``, ``inject_file``
(``b64_path``, ``b64_contents``),
``agentupdate`` (``agentupdate``, ``url,md5sum``). ``inject_file`` sends ``file_inject``
with ``{"b64_path", "b64_file"}``; with ``legacy=true``, the older agents' ``injectfile``:
the decoded path and contents joined by a comma, base64-encoded.
"""

import base64
import json
import time

import dom0_utils
import XenAPIPlugin

POLL = 0.2
DEFAULT_TIMEOUT = 30


class TimeoutError(dom0_utils.PluginError):  # the name nova looks for in its logs
    pass


def _wait_for_agent(arg_dict, request):
    dom_id, request_id = arg_dict["dom_id"], arg_dict["id"]
    if not str(dom_id).isdigit() or not str(request_id).replace("-", "").isalnum():
        raise dom0_utils.PluginError("bad dom_id or id")
    home = f"/local/domain/{dom_id}/data"
    timeout = float(arg_dict.get("timeout", DEFAULT_TIMEOUT))
    dom0_utils.xenstore_write(f"{home}/host/{request_id}", json.dumps(request))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = dom0_utils.xenstore_read(f"{home}/guest/{request_id}")
        if answer:
            dom0_utils.xenstore_rm(f"{home}/guest/{request_id}")
            return answer
        time.sleep(POLL)
    try:
        dom0_utils.xenstore_rm(f"{home}/host/{request_id}")
    finally:
        raise TimeoutError(f"TIMEOUT: No response from agent within {timeout:g} seconds.")


def version(session, arg_dict):
    return _wait_for_agent(arg_dict, {"name": "version", "value": "agent"})


def key_init(session, arg_dict):
    return _wait_for_agent(arg_dict, {"name": "keyinit", "value": arg_dict["pub"]})


def password(session, arg_dict):
    return _wait_for_agent(arg_dict, {"name": "password", "value": arg_dict["enc_pass"]})


def resetnetwork(session, arg_dict):
    return _wait_for_agent(arg_dict, {"name": "resetnetwork", "value": ""})


def inject_file(session, arg_dict):
    if arg_dict.get("legacy", "") == "true":  # agents that know only "injectfile"
        path = base64.b64decode(arg_dict["b64_path"])
        contents = base64.b64decode(arg_dict["b64_contents"])
        value = base64.b64encode(path + b"," + contents).decode()
        return _wait_for_agent(arg_dict, {"name": "injectfile", "value": value})
    value = {"b64_path": arg_dict["b64_path"], "b64_file": arg_dict["b64_contents"]}
    return _wait_for_agent(arg_dict, {"name": "file_inject", "value": value})


def agent_update(session, arg_dict):
    value = f"{arg_dict['url']},{arg_dict['md5sum']}"
    return _wait_for_agent(arg_dict, {"name": "agentupdate", "value": value})


if __name__ == "__main__":
    XenAPIPlugin.dispatch(
        {
            "version": version,
            "key_init": key_init,
            "password": password,
            "resetnetwork": resetnetwork,
            "inject_file": inject_file,
            "agentupdate": agent_update,
        }
    )
