"""The XenStore tree against a model (a dict of paths), under random operations: values,
listings and the per-domain node counts the quotas use stay what the model says, and a
transaction's changes are all or nothing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xenstack.xenstore import Connection, XenStore, XsError
from xenstack.xenstore.perms import owner

NAMES = st.sampled_from(["a", "b", "c"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map(lambda p: "/tool/" + "/".join(p))
OPS = st.lists(
    st.tuples(st.sampled_from(["write", "rm", "mkdir"]), PATHS, st.binary(max_size=4)),
    max_size=40,
)
Op = tuple[str, str, bytes]


def apply(model: dict[str, bytes], op: str, path: str, value: bytes) -> bool:
    """Apply ``op`` to the model; False where XenStore refuses it (ENOENT: removing a node
    whose parent does not exist either)."""
    parts = path.split("/")
    parents = ["/".join(parts[:i]) for i in range(3, len(parts))]
    if op == "rm":
        parent = path.rsplit("/", 1)[0]
        if path not in model and parent != "/tool" and parent not in model:
            return False
        for p in [p for p in model if p == path or p.startswith(path + "/")]:
            del model[p]
        return True
    for p in parents:
        model.setdefault(p, b"")
    if op == "write":
        model[path] = value
    else:
        model.setdefault(path, b"")
    return True


def run(conn: Connection, model: dict[str, bytes], ops: list[Op], tx: int = 0) -> None:
    for op, path, value in ops:
        args = (path, value) if op == "write" else (path,)
        try:
            getattr(conn, op)(*args, tx_id=tx)
            done = True
        except XsError as exc:
            assert exc.name == "ENOENT"
            done = False
        assert apply(model, op, path, value) == done


def check(xs: XenStore, model: dict[str, bytes]) -> None:
    dom0 = xs.dom0
    for path, value in model.items():
        assert dom0.read(path) == value
        children = {p.rsplit("/", 1)[1] for p in model if p.rsplit("/", 1)[0] == path}
        assert set(dom0.directory(path)) == children
    assert set(dom0.directory("/tool")) == {p.split("/")[2] for p in model}
    counts: dict[int, int] = {}
    for node in xs.tree.nodes.values():
        counts[owner(node.perms)] = counts.get(owner(node.perms), 0) + 1
    assert {k: v for k, v in xs.tree.owned.items() if v} == counts


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_operations_match_the_model(ops: list[Op]) -> None:
    xs = XenStore()
    model: dict[str, bytes] = {}
    run(xs.dom0, model, ops)
    check(xs, model)


@settings(max_examples=150, deadline=None)
@given(OPS, OPS)
def test_a_transaction_is_all_or_nothing_and_serialisable(
    inside: list[Op], outside: list[Op]
) -> None:
    xs = XenStore()
    tx_conn, other = xs.connect(0), xs.connect(0)
    tx = tx_conn.transaction_start()
    tx_model: dict[str, bytes] = {}
    run(tx_conn, tx_model, inside, tx)
    out_model: dict[str, bytes] = {}
    run(other, out_model, outside)
    check(xs, out_model)  # nothing of the transaction shows before it commits
    try:
        tx_conn.transaction_end(tx, True)
    except XsError as exc:
        assert exc.name == "EAGAIN"
        assert outside and inside  # only a change from outside to what it touched conflicts
        check(xs, out_model)  # and nothing of the transaction was applied
        return
    # Committed: as if its operations ran after the outside ones, one after the other.
    serial = dict(out_model)
    for op, path, value in inside:
        apply(serial, op, path, value)
    check(xs, serial)
