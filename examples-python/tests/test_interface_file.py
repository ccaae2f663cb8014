"""Interface files (spec/interfaces/*.json): Interface.from_file, the spec's Bytes schema, and
the JSON Schema keywords interface files use ($ref, $defs, anyOf, oneOf)."""

import json
import os
import shutil
import sys
import tempfile
import unittest

from harness import EXAMPLES, Plugin, precompile

sys.path.insert(0, EXAMPLES)
import tether  # noqa: E402

SPEC = os.path.join(os.path.dirname(EXAMPLES), "spec", "interfaces")
KV_FILE = os.path.join(SPEC, "kv.json")


def setUpModule() -> None:
    precompile()


def kv_handlers() -> dict:
    return {"put": lambda key, value: {}, "get": lambda key: {"value": b""},
            "delete": lambda key: {"existed": False}}


def convert(interface: tether.Interface, version: int, method: str, params: dict):
    """Params as the handler would get them, or the -32602 error's message."""
    target = interface.tables[version][method]
    seen = {}
    target.fn = lambda *a, **kw: seen.update(kw) or seen
    try:
        return target.invoke(params)
    except tether.Error as e:
        return e.message


class FromFileTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def write(self, doc: object) -> str:
        path = os.path.join(self.dir, "iface.json")
        with open(path, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        return path

    def test_the_file_schemas_are_declared_as_they_are(self) -> None:
        kv = tether.Interface.from_file(KV_FILE, kv_handlers())
        with open(KV_FILE) as f:
            doc = json.load(f)
        self.assertEqual(kv.name, "kv")
        self.assertEqual(kv.versions, [1, 2])
        for entry in doc["versions"]:
            self.assertEqual(kv.described[entry["version"]]["methods"], entry["methods"])

    def test_a_chosen_version_serves_only_its_methods(self) -> None:
        handlers = kv_handlers()
        del handlers["delete"]
        kv = tether.Interface.from_file(KV_FILE, handlers, versions=1)
        self.assertEqual(kv.versions, [1])
        self.assertEqual(set(kv.tables[1]), {"put", "get"})

    def test_handlers_may_be_an_object_with_public_methods(self) -> None:
        class Store:
            def put(self, key: str, value: bytes) -> dict:
                return {}

            def get(self, key: str) -> dict:
                return {"value": b""}

            def _helper(self) -> None:  # private: not a handler
                pass

        kv = tether.Interface.from_file(KV_FILE, Store(), versions=[1])
        self.assertEqual(set(kv.tables[1]), {"put", "get"})

    def test_a_missing_file_is_named(self) -> None:
        path = os.path.join(self.dir, "nope.json")
        with self.assertRaises(tether.InterfaceFileError) as e:
            tether.Interface.from_file(path, kv_handlers())
        self.assertEqual(str(e.exception),
                         f"cannot read the interface file {path}: No such file or directory")

    def test_a_method_without_handler_is_named(self) -> None:
        handlers = kv_handlers()
        del handlers["delete"]
        with self.assertRaises(tether.InterfaceFileError) as e:
            tether.Interface.from_file(KV_FILE, handlers)
        self.assertEqual(str(e.exception), f"{KV_FILE}: kv version 2 defines the method delete, "
                         "but the handlers have no function 'delete'")

    def test_a_handler_without_method_is_named(self) -> None:
        with self.assertRaises(tether.InterfaceFileError) as e:
            tether.Interface.from_file(KV_FILE, {**kv_handlers(), "list": lambda: {}})
        self.assertEqual(str(e.exception), f"{KV_FILE}: the handlers ['list'] are no method of "
                         "kv version(s) [1, 2] (its methods: ['delete', 'get', 'put'])")

    def test_a_version_the_file_does_not_define_is_named(self) -> None:
        with self.assertRaises(tether.InterfaceFileError) as e:
            tether.Interface.from_file(KV_FILE, kv_handlers(), versions=[2, 3])
        self.assertEqual(str(e.exception),
                         f"{KV_FILE}: interface kv defines the versions [1, 2], not [3]")

    def test_a_file_that_is_not_an_interface_document_is_named(self) -> None:
        for text, why in (("{", "not JSON"), ('{"name": "kv"}', "not an interface document"),
                          ('{"name": "kv", "versions": [{"version": 0, "methods": {}}]}',
                           "every version needs a positive version number")):
            with self.subTest(text=text), self.assertRaises(tether.InterfaceFileError) as e:
                tether.Interface.from_file(self.write(text), {})
            self.assertIn(why, str(e.exception))

    def test_a_ref_that_points_at_nothing_is_refused_when_loading(self) -> None:
        doc = {"name": "t", "versions": [{"version": 1, "methods": {"m": {
            "params": {"type": "object", "properties": {"x": {"$ref": "#/$defs/Gone"}}},
            "result": {"type": "object"}}}}]}
        with self.assertRaises(tether.InterfaceFileError) as e:
            tether.Interface.from_file(self.write(doc), {"m": lambda x: {}})
        self.assertIn("$ref '#/$defs/Gone' points at nothing in its schema", str(e.exception))


class ReferenceFilesTest(unittest.TestCase):
    """The handles and streams of spec/interfaces/counter.json and blob.json, loaded as they are."""

    def test_a_handle_of_counter_json_becomes_a_remote_handle(self) -> None:
        counter = tether.Interface.from_file(os.path.join(SPEC, "counter.json"),
                                             {"put": lambda **kw: {}, "get": lambda key: {}})
        got = convert(counter, 1, "put",
                      {"key": "k", "value": 1, "adder": {"$handle": "h1", "interface": "adder"}})
        self.assertIsInstance(got["adder"], tether.RemoteHandle)
        self.assertEqual((got["adder"].id, got["adder"].interface), ("h1", "adder"))
        # The file's handle schema leaves `interface` open and requires a non-empty `$handle`.
        self.assertEqual(convert(counter, 1, "put", {"key": "k", "value": 1,
                                                     "adder": {"$handle": "", "interface": "x"}}),
                         "invalid params: adder: expected a handle with a non-empty string $handle")

    def test_a_stream_of_blob_json_needs_the_streams_capability(self) -> None:
        names = ("upload", "download", "count", "produce")
        blob = tether.Interface.from_file(os.path.join(SPEC, "blob.json"),
                                          {n: (lambda **kw: {}) for n in names})
        # Without a session that negotiated streams, a stream object is refused with the reason.
        self.assertEqual(convert(blob, 1, "count", {"data": {"$stream": 1, "mode": "read"}}),
                         "invalid params: data: a stream, but the streams capability was not "
                         "negotiated")
        self.assertEqual(convert(blob, 1, "produce", {"size": 2**41}),
                         "invalid params: size: expected at most 1099511627776")


class SchemaKeywordsTest(unittest.TestCase):
    """Validation of what interface files use, through the params conversion of a handler."""

    def setUp(self) -> None:
        tree = {"type": "object", "properties": {
            "kids": {"type": "array", "items": {"$ref": "#/$defs/Tree"}},
            "data": {"$ref": "#/$defs/Bytes"}}}
        params = {
            "type": "object",
            "properties": {
                "tree": {"$ref": "#/$defs/Tree", "description": "a recursive schema"},
                "size": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 0}]},
                "name": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}]},
            },
            "$defs": {"Tree": tree, "Bytes": tether.BYTES_SCHEMA},
        }
        doc = {"name": "lab", "versions": [{"version": 1, "methods": {
            "m": {"params": params, "result": {"type": "object"}}}}]}
        self.iface = tether.Interface.from_document(doc, {"m": lambda **kw: {}})

    def call(self, params: dict):
        return convert(self.iface, 1, "m", params)

    def test_refs_resolve_within_the_method_schema_recursively(self) -> None:
        got = self.call({"tree": {"kids": [{"kids": [], "data": "AAE="}]}})
        self.assertEqual(got, {"tree": {"kids": [{"kids": [], "data": b"\x00\x01"}]}})
        self.assertEqual(self.call({"tree": {"kids": [{"kids": [7]}]}}),
                         "invalid params: tree.kids[0].kids[0]: expected an object")

    def test_one_of_needs_exactly_one_branch(self) -> None:
        self.assertEqual(self.call({"size": 2.5}), {"size": 2.5})
        self.assertEqual(self.call({"size": -1.5}), "invalid params: size: expected at least 0")
        self.assertEqual(self.call({"size": 3}),
                         "invalid params: size: matches more than one alternative of a oneOf")

    def test_any_of_takes_the_first_branch_that_fits(self) -> None:
        self.assertEqual(self.call({"name": None}), {"name": None})
        self.assertEqual(self.call({"name": ""}),
                         "invalid params: name: expected at least 1 characters")
        self.assertEqual(self.call({"name": 5}), "invalid params: name: matches none of the "
                         "alternatives: (1) expected a string; (2) expected null")


class BytesSchemaTest(unittest.TestCase):
    def test_the_bytes_shorthand_is_the_spec_bytes_schema(self) -> None:
        with open(KV_FILE) as f:
            doc = json.load(f)
        spec_bytes = doc["versions"][0]["methods"]["get"]["result"]["$defs"]["Bytes"]
        self.assertEqual(tether.schema(bytes), {"anyOf": spec_bytes["anyOf"]})
        declared = tether.schema({"value": bytes})["properties"]["value"]
        self.assertEqual(declared, tether.BYTES_SCHEMA)
        declared["anyOf"].clear()  # a declaration is a copy: the shorthand stays intact
        self.assertEqual(len(tether.schema(bytes)["anyOf"]), 2)

    def test_a_bytes_value_is_base64_or_an_attachment_reference(self) -> None:
        iface = tether.Interface("b", {1: {"m": ({"v": bytes}, {})}}, {"m": lambda v: {}})
        self.assertEqual(convert(iface, 1, "m", {"v": "AAE="}), {"v": b"\x00\x01"})
        self.assertEqual(convert(iface, 1, "m", {"v": "AAE"}), "invalid params: v: not valid "
                         "base64: its length is not a multiple of 4 (padded base64 expected)")
        target = iface.tables[1]["m"]
        target.fn = lambda v: {"v": v}
        self.assertEqual(target.invoke({"v": {"$bytes": 1}}, [memoryview(b"a"), memoryview(b"bc")]),
                         {"v": b"bc"})
        self.assertEqual(convert(iface, 1, "m", {"v": {"$bytes": 0}}),
                         'invalid params: v: {"$bytes": 0} but the frame has 0 attachments')


class KvExampleTest(unittest.TestCase):
    def test_kv_declares_bytes_as_the_interface_file_does(self) -> None:
        p = Plugin("kv.py")
        self.addCleanup(p.kill)
        declared = p.initialize({"kv": [1, 2]})["result"]["interfaces"]["kv"]["methods"]
        with open(KV_FILE) as f:
            doc = json.load(f)
        spec_bytes = doc["versions"][1]["methods"]["put"]["params"]["$defs"]["Bytes"]
        self.assertEqual(declared["put"]["params"]["properties"]["value"],
                         {"anyOf": spec_bytes["anyOf"]})
        self.assertEqual(declared["get"]["result"]["properties"]["value"],
                         {"anyOf": spec_bytes["anyOf"]})
        self.assertEqual(p.result("kv.put", {"key": "k", "value": "aGk="}), {})
        self.assertEqual(p.result("kv.get", {"key": "k"}), {"value": "aGk="})
        p.shutdown()


if __name__ == "__main__":
    unittest.main()
