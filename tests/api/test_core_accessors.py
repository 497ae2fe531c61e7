"""The generated accessors of a few classes, exercised over the wire through the XenAPI SDK."""

from __future__ import annotations

import xmlrpc.client
from typing import Any

import pytest
import XenAPI
from test_core_support import new_network, new_vif

from xenstack.idl.model import CLASSES, ENUMS
from xenstack.idl.types import NULL_REF, Type
from xenstack.impl.registry import HANDLERS
from xenstack.testing import halted_vm


def wire_form(value: Any) -> Any:
    """What a value reads back as over XML-RPC: ints become decimal strings."""
    if type(value) is int:
        return str(value)
    if isinstance(value, xmlrpc.client.DateTime):
        return value
    return value


def sample(ty: Type, current: Any, field: str, refs: dict[str, list[str]]) -> Any:
    """A valid value of ``ty`` different from ``current`` where that is possible."""
    if ty.kind == "string":
        return f"value of {field} <&>"
    if ty.kind == "int":
        return 7 if current != "7" else 8
    if ty.kind == "float":
        return 1.5 if current != 1.5 else 2.5
    if ty.kind == "bool":
        return not current
    if ty.kind == "enum":
        values = ENUMS[ty.name]
        return next((v for v in values if v != current), values[0])
    if ty.kind == "ref":
        candidates = [r for r in refs.get(ty.name, []) if r != current]
        return candidates[0] if candidates else NULL_REF
    if ty.kind == "set":
        assert ty.of is not None
        return [sample(ty.of, None, f"{field}-a", refs), sample(ty.of, None, f"{field}-b", refs)]
    if ty.kind == "map":
        assert ty.key is not None and ty.of is not None
        return {sample(ty.key, None, f"{field}-k", refs): sample(ty.of, None, field, refs)}
    pytest.fail(f"no sample for {ty}")


@pytest.fixture
def objects(session: Any) -> dict[str, str]:
    """One object of each class under test (SR only if the pool has one)."""
    x = session.xenapi
    found = {
        "VM": halted_vm(session, "accessor-vm"),
        "network": new_network(session, "accessor-net"),
        "pool": x.pool.get_all()[0],
        "host": x.host.get_all()[0],
    }
    srs = x.SR.get_all()
    if srs:
        found["SR"] = srs[0]
    return found


CLASSES_UNDER_TEST = ["VM", "network", "pool", "host", "SR"]


@pytest.mark.parametrize("cls", CLASSES_UNDER_TEST)
def test_every_getter_equals_the_record(session: Any, objects: dict[str, str], cls: str) -> None:
    if cls not in objects:
        pytest.skip(f"the pool has no {cls}")
    api = getattr(session.xenapi, cls)
    ref = objects[cls]
    record = api.get_record(ref)
    assert set(record) == set(CLASSES[cls].fields)
    for field in CLASSES[cls].fields:
        assert getattr(api, f"get_{field}")(ref) == record[field], field


@pytest.mark.parametrize("cls", CLASSES_UNDER_TEST)
def test_every_generic_setter_roundtrips(session: Any, objects: dict[str, str], cls: str) -> None:
    if cls not in objects:
        pytest.skip(f"the pool has no {cls}")
    api = getattr(session.xenapi, cls)
    ref = objects[cls]
    refs = {c: getattr(session.xenapi, c).get_all() for c in ("SR", "host")}
    checked = 0
    for name, fdef in CLASSES[cls].fields.items():
        if not fdef.writable or f"{cls}.set_{name}" in HANDLERS:
            continue  # an impl function owns this setter; its own tests cover it
        value = sample(fdef.type, api.get_record(ref)[name], name, refs)
        getattr(api, f"set_{name}")(ref, value)
        assert getattr(api, f"get_{name}")(ref) == wire_form(value), name
        assert api.get_record(ref)[name] == wire_form(value), name
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("cls", ["VM", "network", "pool", "host"])
def test_maps_and_sets(session: Any, objects: dict[str, str], cls: str) -> None:
    api = getattr(session.xenapi, cls)
    ref = objects[cls]
    uuid = api.get_uuid(ref)
    before = api.get_other_config(ref)
    api.add_to_other_config(ref, "xs-key", "one")
    assert api.get_other_config(ref) == {**before, "xs-key": "one"}
    with pytest.raises(XenAPI.Failure) as err:
        api.add_to_other_config(ref, "xs-key", "two")
    assert err.value.details == ["MAP_DUPLICATE_KEY", cls, "other_config", uuid, "xs-key"]
    assert api.get_other_config(ref)["xs-key"] == "one"  # nothing changed
    api.remove_from_other_config(ref, "xs-key")
    api.remove_from_other_config(ref, "xs-key")  # removing an absent key is no error
    assert api.get_other_config(ref) == before
    api.set_tags(ref, [])
    api.add_tags(ref, "blue")
    api.add_tags(ref, "red")
    api.add_tags(ref, "blue")  # a set: adding again changes nothing
    assert sorted(api.get_tags(ref)) == ["blue", "red"]
    api.remove_tags(ref, "blue")
    assert api.get_tags(ref) == ["red"]


def test_enum_keyed_map(session: Any, objects: dict[str, str]) -> None:
    vm = objects["VM"]
    x = session.xenapi
    x.VM.add_to_blocked_operations(vm, "start", "maintenance")
    assert x.VM.get_blocked_operations(vm) == {"start": "maintenance"}
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.add_to_blocked_operations(vm, "no_such_operation", "x")
    assert err.value.details[0] == "FIELD_TYPE_ERROR"
    x.VM.remove_from_blocked_operations(vm, "start")
    assert x.VM.get_blocked_operations(vm) == {}


def test_lookup_by_uuid_and_name(session: Any, objects: dict[str, str]) -> None:
    x = session.xenapi
    vm = objects["VM"]
    assert x.VM.get_by_uuid(x.VM.get_uuid(vm)) == vm
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.get_by_uuid("00000000-0000-0000-0000-000000000000")
    assert err.value.details == ["UUID_INVALID", "VM", "00000000-0000-0000-0000-000000000000"]
    twin = halted_vm(session, "accessor-vm")
    assert sorted(x.VM.get_by_name_label("accessor-vm")) == sorted([vm, twin])
    assert x.VM.get_by_name_label("nobody has this name") == []
    x.VM.set_name_label(twin, "renamed")
    assert x.VM.get_by_name_label("accessor-vm") == [vm]
    assert x.VM.get_by_name_label("renamed") == [twin]


def test_create_and_destroy_keep_relations(session: Any) -> None:
    x = session.xenapi
    vm = halted_vm(session, "vif-owner")
    net = new_network(session, "vif-net")
    vif = new_vif(session, vm, net)
    assert x.VIF.get_VM(vif) == vm
    assert x.VM.get_VIFs(vm) == [vif]
    assert x.network.get_VIFs(net) == [vif]
    second = new_vif(session, vm, net, device="1")
    assert sorted(x.VM.get_VIFs(vm)) == sorted([vif, second])
    x.VIF.destroy(vif)
    assert x.VM.get_VIFs(vm) == [second]
    assert x.network.get_VIFs(net) == [second]
    with pytest.raises(XenAPI.Failure) as err:
        x.VIF.get_record(vif)
    assert err.value.details == ["HANDLE_INVALID", "VIF", vif]
    x.VIF.destroy(second)
    assert x.VM.get_VIFs(vm) == []
    assert x.network.get_VIFs(net) == []


def test_create_ignores_runtime_fields(session: Any) -> None:
    x = session.xenapi
    vm = halted_vm(session, "runtime", uuid="11111111-1111-1111-1111-111111111111", VIFs=["x"])
    record = x.VM.get_record(vm)
    assert record["uuid"] != "11111111-1111-1111-1111-111111111111"
    assert record["VIFs"] == []


def test_where_expressions(session: Any) -> None:
    x = session.xenapi
    plain = halted_vm(session, "x")
    template = halted_vm(session, "x", is_a_template=True)
    other = halted_vm(session, "y")
    x.VM.add_to_other_config(other, "k", 'quote " and paren )')

    def where(expr: str) -> set[str]:
        records = x.VM.get_all_records_where(expr)
        refs = set(x.VM.get_all_where(expr))
        assert set(records) == refs
        for ref, rec in records.items():
            assert rec == x.VM.get_record(ref)
        return refs

    assert where('field "name__label"="x" and not field "is_a_template"="true"') == {plain}
    assert where('field "name__label" = "x"') == {plain, template}
    expr = '(field "name__label"="y" or field "is_a_template"="true") and true'
    templates = {r for r, rec in x.VM.get_all_records().items() if rec["is_a_template"]}
    assert template in templates
    assert where(expr) == {other} | templates
    assert where('field "name__label" <> "x" and field "name__label" = "y"') == {other}
    assert where("false") == set()
    assert len(where("true")) == len(x.VM.get_all())
    # XAPI's parse errors: INVALID_VALUE [expression, what its parser raised]
    for bad in ['field "name__label" =', 'field "name__label"="x" and', "(true", "nonsense"]:
        for call in (x.VM.get_all_records_where, x.VM.get_all_where):
            with pytest.raises(XenAPI.Failure) as err:
                call(bad)
            assert err.value.details == ["INVALID_VALUE", bad, "Parsing.Parse_error"], bad
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.get_all_where('field "a" = "b" ; true')
    lexing = ["INVALID_VALUE", 'field "a" = "b" ; true', 'Failure("lexing: empty token")']
    assert err.value.details == lexing


def test_destroy_unknown_ref_is_handle_invalid(session: Any) -> None:
    bogus = "OpaqueRef:12345678-1234-1234-1234-123456789abc"
    with pytest.raises(XenAPI.Failure) as err:
        session.xenapi.network.destroy(bogus)
    assert err.value.details == ["HANDLE_INVALID", "network", bogus]
