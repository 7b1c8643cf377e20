#!/usr/bin/env python3
"""Generates ctid_client/messages.py from docs/asyncapi.yaml (the AsyncAPI document of the client
protocol, docs/protocol.md).

    python scripts/gen_messages.py            # writes ctid_client/messages.py
    python scripts/gen_messages.py --check    # exit 1 if the committed file differs

One dataclass per message of ``components.messages`` (its payload schema under
``components.schemas``), with one field per attribute, named as on the wire; the shared schemas
become type aliases (enumerations as ``Literal``); a KV list (``KVList``, or an object whose
``additionalProperties`` is a ``KVValue``, such as the DN status) becomes
:class:`ctid_client.kv.KVList`. The output depends only on the document (no date, no path).
"""

from __future__ import annotations

import argparse
import keyword
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / "ctid_client"
DEFAULT_SPEC = HERE.parent.parent.parent / "docs" / "asyncapi.yaml"
OUTPUT = PACKAGE / "messages.py"

REF = "#/components/schemas/"
#: Shared schemas the runtime provides (ctid_client.kv) instead of generated aliases.
KV_SCHEMAS = {"KVList", "KVObject", "KVPairs", "KVPair", "KVValue"}
#: The member naming the message; not a field.
NAME_MEMBERS = {"request", "event", "message"}
WIDTH = 100


class Spec:
    def __init__(self, doc: dict[str, Any]) -> None:
        comps = doc.get("components") or {}
        self.schemas: dict[str, Any] = comps.get("schemas") or {}
        self.messages: dict[str, Any] = comps.get("messages") or {}
        for name, msg in self.messages.items():
            payload = (msg or {}).get("payload") or {}
            ref = payload.get("$ref", "")
            if ref != REF + name or name not in self.schemas:
                raise SystemExit(f"message {name}: payload must be $ref {REF}{name}")
        self.requests = [n for n in self.messages if n.startswith("Request")]
        self.events = [n for n in self.messages if n.startswith("Event")]
        other = [n for n in self.messages if n not in self.requests and n not in self.events]
        if other:
            raise SystemExit(f"messages neither Request* nor Event*: {other}")
        # Shared definitions: every schema that is not a message payload.
        self.shared = [n for n in self.schemas if n not in self.messages]

    def resolve(self, schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        ref = schema.get("$ref")
        if ref is None:
            return None, schema
        if not ref.startswith(REF):
            raise SystemExit(f"unsupported $ref {ref}")
        name = ref[len(REF) :]
        if name not in self.schemas:
            raise SystemExit(f"$ref to a missing schema: {ref}")
        return name, self.schemas[name]

    def is_kv(self, schema: dict[str, Any]) -> bool:
        """A KV list: the KVList schema, or an object whose other members are KVValues."""
        name, s = self.resolve(schema)
        if name in ("KVList", "KVObject", "KVPairs"):
            return True
        if name is not None and name in KV_SCHEMAS:
            return False
        ap = s.get("additionalProperties")
        return s.get("type") == "object" and isinstance(ap, dict) and ap.get("$ref") == REF + "KVValue"

    def py_type(self, schema: dict[str, Any]) -> str:
        """The Python annotation of a schema."""
        if self.is_kv(schema):
            name, _ = self.resolve(schema)
            return name if name is not None and name not in KV_SCHEMAS else "KVList"
        ref = schema.get("$ref")
        if ref is not None:
            name, _ = self.resolve(schema)
            assert name is not None
            if name == "KVValue":
                return "KVValue"
            return name
        if "const" in schema:
            return f"Literal[{schema['const']!r}]"
        if "enum" in schema:
            return "Literal[" + ", ".join(repr(v) for v in schema["enum"]) + "]"
        if "oneOf" in schema:
            parts: list[str] = []
            for alt in schema["oneOf"]:
                t = self.py_type(alt)
                if t not in parts:
                    parts.append(t)
            return parts[0] if len(parts) == 1 else "Union[" + ", ".join(parts) + "]"
        t = schema.get("type")
        if t == "string":
            return "str"
        if t == "integer":
            return "int"
        if t == "number":
            return "float"
        if t == "boolean":
            return "bool"
        if t == "array":
            items = schema.get("items")
            return f"list[{self.py_type(items)}]" if isinstance(items, dict) else "list[Any]"
        if t == "object":
            ap = schema.get("additionalProperties")
            if isinstance(ap, dict):
                return f"dict[str, {self.py_type(ap)}]"
            return "dict[str, Any]"
        return "Any"

    def refs(self, schema: Any) -> set[str]:
        out: set[str] = set()
        if isinstance(schema, dict):
            ref = schema.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF):
                out.add(ref[len(REF) :])
            for k, v in schema.items():
                if k == "properties" and isinstance(v, dict):
                    for p in v.values():
                        out |= self.refs(p)
                elif k != "$ref":
                    out |= self.refs(v)
        elif isinstance(schema, list):
            for v in schema:
                out |= self.refs(v)
        return out


def comment(text: str | None, indent: str, prefix: str = "#: ") -> list[str]:
    if not text:
        return []
    lines: list[str] = []
    for para in str(text).strip().splitlines():
        para = para.strip()
        if not para:
            continue
        lines += textwrap.wrap(
            para,
            width=WIDTH - len(indent) - len(prefix),
            break_long_words=False,
            break_on_hyphens=False,
        ) or [""]
    return [f"{indent}{prefix}{line}".rstrip() for line in lines]


def docstring(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    body = comment(text.replace('"""', "'''").replace("\\", "\\\\"), indent, prefix="")
    if len(body) == 1 and len(body[0]) + 6 <= WIDTH:
        return [f'{indent}"""{body[0].strip()}"""']
    return [f'{indent}"""'] + body + [f'{indent}"""']


def field_name(wire: str) -> str:
    if not wire.isidentifier() or keyword.iskeyword(wire):
        raise SystemExit(f"attribute {wire!r} is not a Python identifier")
    return wire


def gen_shared(spec: Spec) -> list[str]:
    """Type aliases of the shared schemas, dependencies first."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in seen or name in KV_SCHEMAS or name in spec.messages:
            return
        if name in stack:
            raise SystemExit(f"schema cycle: {' -> '.join(stack + (name,))}")
        s = spec.schemas[name]
        if not spec.is_kv({"$ref": REF + name}):
            for dep in sorted(spec.refs(s)):
                visit(dep, stack + (name,))
        seen.add(name)
        order.append(name)

    for name in spec.shared:
        visit(name, ())

    out: list[str] = []
    for name in order:
        s = spec.schemas[name]
        out += comment(s.get("description"), "")
        if spec.is_kv({"$ref": REF + name}):
            keys = list((s.get("properties") or {}).keys())
            if keys:
                out += comment("Known keys: " + ", ".join(keys) + ".", "")
            out.append(f"{name} = KVList")
        else:
            ref = s.get("$ref")
            if ref is None and "enum" in s:
                out.append(f"{name} = {spec.py_type(s)}")
                const = name_upper(name) + "_VALUES"
                out.append(f"{const}: tuple[{'str' if s.get('type') == 'string' else 'int'}, ...] = (")
                for v in s["enum"]:
                    out.append(f"    {v!r},")
                out.append(")")
            else:
                out.append(f"{name} = {spec.py_type(s)}")
        out.append("")
    return out


def name_upper(name: str) -> str:
    """AddressType → ADDRESS_TYPE, DNRole → DN_ROLE, KVList → KV_LIST."""
    out = ""
    for i, c in enumerate(name):
        if c.isupper() and i > 0:
            prev, nxt = name[i - 1], name[i + 1] if i + 1 < len(name) else ""
            if prev.islower() or prev.isdigit() or (nxt and nxt.islower() and prev.isupper()):
                out += "_"
        out += c.upper()
    return out


def gen_message(spec: Spec, name: str, base: str) -> list[str]:
    s = spec.schemas[name]
    if s.get("type") != "object":
        raise SystemExit(f"{name}: the payload must be an object schema")
    props: dict[str, Any] = s.get("properties") or {}
    required = [r for r in (s.get("required") or []) if r not in NAME_MEMBERS]
    fields = [p for p in props if p not in NAME_MEMBERS]
    for p in required:
        if p not in props:
            raise SystemExit(f"{name}: required {p} is not a property")
    kv = [p for p in fields if spec.is_kv(props[p])]

    out = ["", "", "@dataclass(kw_only=True)", f"class {name}({base}):"]
    out += docstring(s.get("description") or spec.messages[name].get("summary"), "    ")
    out.append("")
    out.append(f"    NAME: ClassVar[str] = {name!r}")
    out.append("    FIELDS: ClassVar[tuple[str, ...]] = (")
    for p in fields:
        out.append(f"        {p!r},")
    out.append("    )")
    out.append(f"    REQUIRED: ClassVar[frozenset[str]] = frozenset({sorted(required)!r})")
    out.append(f"    KV_FIELDS: ClassVar[frozenset[str]] = frozenset({sorted(kv)!r})")
    for p in fields:
        if base == "Request" and p == "ReferenceID":
            continue  # Request.ReferenceID: filled by the client
        f = field_name(p)
        t = spec.py_type(props[p])
        if base == "Request" and p in kv:
            t = "KVLike"
        notes = comment(props[p].get("description"), "    ")
        if notes:
            out.append("")
        out += notes
        if p in required:
            out.append(f"    {f}: {t}")
        else:
            out.append(f"    {f}: {t} | None = None")
    return out


def generate(doc: dict[str, Any]) -> str:
    spec = Spec(doc)
    version = (doc.get("info") or {}).get("version", "")
    out = [
        f'"""The messages of the ctid client protocol, version {version} (docs/protocol.md).',
        "",
        "Generated by scripts/gen_messages.py from docs/asyncapi.yaml: do not edit; run",
        "``python scripts/gen_messages.py`` after changing the document.",
        "",
        "Every request and event is a dataclass whose fields are its attributes, named as on the",
        "wire (``ThisDN``, ``ConnID``, ``UserData``); an absent attribute is ``None``. KV lists",
        "(``UserData``, ``Reasons``, ``Extensions``) are :class:`ctid_client.kv.KVList`; a request",
        "also takes a plain mapping there.",
        '"""',
        "",
        "# ruff: noqa: E501",
        "from __future__ import annotations",
        "",
        "from dataclasses import dataclass",
        "from typing import @TYPING@",
        "",
        "from .base import Event, Request",
        "from .kv import @KV@",
        "",
        '__all__ = ["REQUESTS", "EVENTS", "KVList", "KVValue"]',
        "",
    ]
    out += gen_shared(spec)
    for name in spec.requests:
        out += gen_message(spec, name, "Request")
    for name in spec.events:
        out += gen_message(spec, name, "Event")
    out += ["", ""]
    out.append("#: Every request class by its name.")
    out.append("REQUESTS: dict[str, type[Request]] = {")
    for name in spec.requests:
        out.append(f"    {name!r}: {name},")
    out.append("}")
    out.append("")
    out.append("#: Every event class by its name.")
    out.append("EVENTS: dict[str, type[Event]] = {")
    for name in spec.events:
        out.append(f"    {name!r}: {name},")
    out.append("}")
    out.append("")
    out.append("__all__ += list(REQUESTS) + list(EVENTS)")
    text = "\n".join(out) + "\n"
    body = text.split("__all__", 1)[1]
    typing = [n for n in ("Any", "ClassVar", "Literal", "Union") if re.search(rf"\b{n}\b", body)]
    kv = [n for n in ("KVLike", "KVList", "KVValue") if n in ("KVList", "KVValue") or re.search(rf"\b{n}\b", body)]
    return text.replace("@TYPING@", ", ".join(typing), 1).replace("@KV@", ", ".join(kv), 1)


def generate_file(spec_path: Path = DEFAULT_SPEC) -> str:
    with open(spec_path, encoding="utf-8") as f:
        return generate(yaml.safe_load(f))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="the AsyncAPI document")
    ap.add_argument("--out", type=Path, default=OUTPUT, help="the module to write")
    ap.add_argument("--check", action="store_true", help="exit 1 if --out differs from a fresh generation")
    args = ap.parse_args()
    text = generate_file(args.spec)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
