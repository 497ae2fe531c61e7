"""The JSON stream parser used for OVSDB's JSON-RPC: any stream of messages, cut anywhere,
gives back the messages the standard library would read, with OVS's parser interface."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from xenstack.net.ovs.fastjson import StreamParser

scalars = st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\{}[] \n\u00e9')
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.dictionaries(st.text(max_size=4), values, max_size=4), min_size=1, max_size=4
)


def read(chunks: list[str]) -> list[Any]:
    """What OVS's jsonrpc.Connection.recv does with its input, message after message."""
    out: list[Any] = []
    parser: StreamParser | None = None
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        while buffer:
            parser = parser or StreamParser()
            buffer = buffer[parser.feed(buffer) :]
            if parser.is_done():
                out.append(parser.finish())
                parser = None
            elif not buffer:
                break
    return out


@given(
    messages,
    st.lists(st.integers(min_value=1, max_value=50), max_size=30),
    st.sampled_from(["", "\n", "  "]),
)
def test_messages_come_back_whatever_the_cuts(msgs: list[Any], cuts: list[int], gap: str) -> None:
    stream = "".join(json.dumps(m) + gap for m in msgs)
    chunks, at = [], 0
    for size in cuts:
        chunks.append(stream[at : at + size])
        at += size
    chunks.append(stream[at:])
    assert read(chunks) == msgs


def test_bad_json_is_an_error_string_as_in_ovs() -> None:
    parser = StreamParser()
    parser.feed('{"a": tru}')
    assert parser.is_done() and isinstance(parser.finish(), str)
