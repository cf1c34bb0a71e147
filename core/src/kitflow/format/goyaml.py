"""YAML the way kit's Go library (yaml.v3) reads and writes it.

kit decodes Kitfiles with yaml.v3 (YAML 1.2 core scalars: ``yes`` is a string, ``0777`` is octal)
and writes them back with yaml.v3's encoder (indent 2). PyYAML follows YAML 1.1 and formats
differently, so kitflow uses PyYAML only to build the node tree and does the rest here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

try:  # the C loader composes ~10x faster; both give the same nodes and marks
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

STR_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
BOOL_TAG = "tag:yaml.org,2002:bool"
NULL_TAG = "tag:yaml.org,2002:null"
MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"
MERGE_TAG = "tag:yaml.org,2002:merge"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUES = frozenset({"true", "True", "TRUE"})
_FALSES = frozenset({"false", "False", "FALSE"})
_SPECIAL_FLOATS = {
    ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan,
    ".inf": math.inf, ".Inf": math.inf, ".INF": math.inf,
    "+.inf": math.inf, "+.Inf": math.inf, "+.INF": math.inf,
    "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
}  # fmt: skip
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_BASE60_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_OLD_BOOLS = frozenset(
    "y Y yes Yes YES on On ON n N no No NO off Off OFF".split()  # noqa: SIM905
)
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}
_TS_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})")
_TS_TIME = re.compile(r"^(\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d+)?")
_TS_ZONE = re.compile(r"^(Z|[+-]\d{2}:\d{2})$")


class MergeKey:
    """The ``<<`` merge key of a mapping (resolved to !!merge, as yaml.v3 does)."""


MERGE = MergeKey()


# --------------------------------------------------------------------------------------------
# Scalar resolution (yaml.v3 resolve.go semantics)


def _go_parse_int(text: str, base: int = 0) -> int | None:
    """Go's strconv.ParseInt/ParseUint digit rules (base 0 = prefix decides); None if invalid."""
    s = text
    neg = False
    if s[:1] in "+-" and s:
        neg = s[0] == "-"
        s = s[1:]
    if base == 0:
        base = 10
        if s[:1] == "0":
            if s[:2].lower() == "0x":
                base, s = 16, s[2:]
            elif s[:2].lower() == "0o":
                base, s = 8, s[2:]
            elif s[:2].lower() == "0b":
                base, s = 2, s[2:]
            else:
                base = 8 if len(s) > 1 else 10
                s = s[1:] if len(s) > 1 else s
    if not s or any(c not in _DIGITS[base] for c in s):
        return None
    value = int(s, base)
    return -value if neg else value


def _go_parse_float(text: str) -> float | None:
    """strconv.ParseFloat for decimal text; None on syntax error or overflow (ErrRange)."""
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isinf(value) and "inf" not in text.lower():
        return None
    return value


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def is_timestamp(text: str) -> bool:
    """yaml.v3's timestamp check (dates like ``2024-1-2`` and RFC 3339 date-times)."""
    m = _TS_DATE.match(text)
    if not m:
        return False
    year, month, day = (int(g) for g in m.groups())
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return False
    rest = text[m.end() :]
    if not rest:
        return True
    sep, rest = rest[0], rest[1:]
    if sep not in "Tt ":
        return False
    t = _TS_TIME.match(rest)
    if not t:
        return False
    hour, minute, second = int(t.group(1)), int(t.group(2)), int(t.group(3))
    if hour > 23 or minute > 59 or second > 59:
        return False
    rest = rest[t.end() :]
    if sep == " ":
        return rest == ""
    return bool(_TS_ZONE.match(rest))


def resolve_plain(text: str) -> tuple[str, Any]:
    """Resolve a plain (untagged, unquoted) scalar as yaml.v3 does: (tag, Python value).

    Timestamps resolve to their text (yaml.v3 keeps them as strings for ``any`` values).
    """
    if text in _NULLS:
        return NULL_TAG, None
    if text in _TRUES:
        return BOOL_TAG, True
    if text in _FALSES:
        return BOOL_TAG, False
    if text in _SPECIAL_FLOATS:
        return FLOAT_TAG, _SPECIAL_FLOATS[text]
    if text == "<<":
        return MERGE_TAG, MERGE
    first = text[0]
    if first == ".":
        if re.fullmatch(r"\.[0-9]+([eE][-+]?[0-9]+)?", text):
            value = _go_parse_float(text)
            if value is not None:
                return FLOAT_TAG, value
        return STR_TAG, text
    if first in "+-0123456789":
        if is_timestamp(text):
            return TIMESTAMP_TAG, text
        plain = text.replace("_", "")
        ival = _go_parse_int(plain) if plain else None
        if ival is not None and _INT64_MIN <= ival <= _UINT64_MAX:
            return INT_TAG, ival
        if _YAML_FLOAT.match(plain):
            fval = _go_parse_float(plain)
            if fval is not None:
                return FLOAT_TAG, fval
    return STR_TAG, text


def resolve_tagged(tag: str, text: str) -> tuple[str, Any]:
    """Resolve a scalar with an explicit tag (``!!str``, ``!!int``, ...); unknown tags give text."""
    if tag == STR_TAG:
        return STR_TAG, text
    rtag, value = resolve_plain(text)
    if tag in (rtag, TIMESTAMP_TAG) or tag not in (INT_TAG, FLOAT_TAG, BOOL_TAG, NULL_TAG):
        return (rtag, value) if tag in (rtag, TIMESTAMP_TAG) else (STR_TAG, text)
    if tag == FLOAT_TAG and rtag == INT_TAG:
        return FLOAT_TAG, float(value)
    raise ValueError(f"cannot decode {_short(rtag)} `{text}` as a {_short(tag)}")


def _quote(text: str) -> str:
    """Go's %#v of a string (enough for error messages)."""
    import json

    return json.dumps(text, ensure_ascii=False)


def _short(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


# --------------------------------------------------------------------------------------------
# Parsing text into nodes


def compose(text: str) -> yaml.Node | None:
    """The first YAML document of ``text`` as a PyYAML node tree (None for an empty stream).

    Like yaml.v3's Decoder.Decode, only the first document is read.
    """
    loader = _Loader(text)
    try:
        if loader.check_node():
            node: yaml.Node | None = loader.get_node()
            return node
        return None
    finally:
        loader.dispose()


def node_line(node: yaml.Node) -> int:
    """1-based line of a node (yaml.v3 counts lines from 1)."""
    return int(node.start_mark.line) + 1


def is_plain(node: yaml.ScalarNode) -> bool:
    """True for an unquoted, non-block scalar."""
    return node.style is None or node.style == ""


_RESOLVER = yaml.resolver.Resolver()  # the implicit (YAML 1.1) tags PyYAML gave plain scalars


def explicit_tag(node: yaml.Node) -> str | None:
    """The tag written in the text (``!!int 3``), or None when the tag was only inferred."""
    if not isinstance(node, yaml.ScalarNode):
        default = MAP_TAG if isinstance(node, yaml.MappingNode) else SEQ_TAG
        return None if node.tag == default else node.tag
    if is_plain(node):
        implicit = _RESOLVER.resolve(yaml.ScalarNode, node.value, (True, False))  # type: ignore[no-untyped-call]
        return None if node.tag == implicit else node.tag
    return None if node.tag == STR_TAG else node.tag


def scalar_short_tag(node: yaml.ScalarNode) -> str:
    """yaml.v3's ShortTag of a scalar node (quoted and block scalars are strings)."""
    tag = explicit_tag(node)
    if tag is not None:
        return _short(tag)
    if not is_plain(node):
        return "!!str"
    return _short(resolve_plain(node.value)[0])


class ExcessiveAliasing(ValueError):
    """The document expands to far more nodes than it contains (a 'billion laughs' document)."""


def to_value(
    node: yaml.Node, budget: list[int] | None = None, _active: set[int] | None = None
) -> Any:
    """Convert a node to the value yaml.v3 gives an ``any`` field (dict, list, scalar or None).

    Mappings whose keys are all strings become ``dict[str, Any]``; other keys are kept as Python
    values (Go's map[interface{}]interface{}, which JSON cannot store). ``<<`` merges are applied.
    Raises ValueError for cycles, excessive aliasing and undecodable tagged scalars.
    """
    if budget is None:
        budget = [1_000_000]
    if _active is None:
        _active = set()
    budget[0] -= 1
    if budget[0] < 0:
        raise ExcessiveAliasing("document contains excessive aliasing")
    if isinstance(node, yaml.ScalarNode):
        tag = explicit_tag(node)
        if tag is not None:
            return resolve_tagged(tag, node.value)[1]
        if not is_plain(node):
            return node.value
        value = resolve_plain(node.value)[1]
        return "<<" if value is MERGE else value
    key = id(node)
    if key in _active:
        raise ValueError(f"line {node_line(node)}: anchor refers to itself (recursive document)")
    _active.add(key)
    try:
        if isinstance(node, yaml.SequenceNode):
            return [to_value(item, budget, _active) for item in node.value]
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            merged: dict[Any, Any] = {}
            seen: dict[str, int] = {}
            for knode, vnode in node.value:
                if isinstance(knode, yaml.ScalarNode):
                    # yaml.v3 refuses a scalar key written twice (by its text) in one mapping
                    if knode.value in seen:
                        raise ValueError(
                            f"line {node_line(knode)}: mapping key {_quote(knode.value)} already"
                            f" defined at line {seen[knode.value]}"
                        )
                    seen[knode.value] = node_line(knode)
                if (
                    isinstance(knode, yaml.ScalarNode)
                    and is_plain(knode)
                    and knode.value == "<<"
                    and explicit_tag(knode) is None
                ):
                    sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                    for src in sources:
                        value = to_value(src, budget, _active)
                        if not isinstance(value, dict):
                            raise ValueError(
                                f"line {node_line(src)}: map merge requires map or sequence of maps"
                                " as the value"
                            )
                        for k, v in value.items():
                            merged.setdefault(k, v)
                    continue
                kval = to_value(knode, budget, _active)
                if isinstance(kval, dict | list):
                    raise ValueError(f"line {node_line(knode)}: invalid map key: {kval!r}")
                out[kval] = to_value(vnode, budget, _active)
            for k, v in merged.items():
                out.setdefault(k, v)
            return out
    finally:
        _active.discard(key)
    raise ValueError(f"unsupported YAML node {type(node).__name__}")


# --------------------------------------------------------------------------------------------
# Formatting numbers the way Go's strconv does


def go_format_float_g(value: float) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)`` (what yaml.v3 writes for a float64)."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    from kitflow.format.gojson import _shortest_digits

    sign = "-" if value < 0 else ""
    digits, point = _shortest_digits(abs(value))
    exp = point - 1
    # shortest 'g': exponent form when the exponent is < -4 or >= 6 (Go: eprec = 6)
    if exp < -4 or exp >= 6:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


# --------------------------------------------------------------------------------------------
# Emitting (a port of the parts of yaml.v3's emitter a Kitfile needs: block and flow
# collections, plain/single/double-quoted/literal scalars, indent 2, no line wrapping)


@dataclass
class Flow:
    """Marks a list to be written in flow style (``[a, b]``), like yaml's ``,flow`` tag."""

    items: list[Any]


def _is_printable(ch: str) -> bool:
    c = ord(ch)
    return (
        c == 0x0A
        or 0x20 <= c <= 0x7E
        or 0xA0 <= c <= 0xD7FF
        or (0xE000 <= c <= 0xFFFD and c != 0xFEFF)
    )


_BREAKS = frozenset("\r\n\x85\u2028\u2029")
_BLANKZ = frozenset(" \t\r\n\x85\u2028\u2029\x00")


@dataclass
class _Analysis:
    multiline: bool
    flow_plain: bool
    block_plain: bool
    single_quoted: bool
    block: bool


def _analyze(value: str) -> _Analysis:
    if not value:
        return _Analysis(False, False, True, True, False)
    block_ind = flow_ind = line_breaks = special = tabs = False
    lead_space = lead_break = trail_space = trail_break = False
    break_space = space_break = False
    prev_space = prev_break = False
    if value.startswith(("---", "...")):
        block_ind = flow_ind = True
    preceded_ws = True
    n = len(value)
    for i, ch in enumerate(value):
        followed_ws = i + 1 >= n or value[i + 1] in " \t"
        if i == 0:
            if ch in "#,[]{}&*!|>'\"%@`":
                flow_ind = block_ind = True
            elif ch in "?:":
                flow_ind = True
                if followed_ws:
                    block_ind = True
            elif ch == "-" and followed_ws:
                flow_ind = block_ind = True
        else:
            if ch in ",?[]{}":
                flow_ind = True
            elif ch == ":":
                flow_ind = True
                if followed_ws:
                    block_ind = True
            elif ch == "#" and preceded_ws:
                flow_ind = block_ind = True
        if ch == "\t":
            tabs = True
        elif not _is_printable(ch):
            special = True
        if ch == " ":
            if i == 0:
                lead_space = True
            if i == n - 1:
                trail_space = True
            if prev_break:
                break_space = True
            prev_space, prev_break = True, False
        elif ch in _BREAKS:
            line_breaks = True
            if i == 0:
                lead_break = True
            if i == n - 1:
                trail_break = True
            if prev_space:
                space_break = True
            prev_space, prev_break = False, True
        else:
            prev_space = prev_break = False
        preceded_ws = ch in _BLANKZ
    a = _Analysis(line_breaks, True, True, True, True)
    if lead_space or lead_break or trail_space or trail_break:
        a.flow_plain = a.block_plain = False
    if trail_space:
        a.block = False
    if break_space:
        a.flow_plain = a.block_plain = a.single_quoted = False
    if space_break or tabs or special:
        a.flow_plain = a.block_plain = a.single_quoted = False
    if space_break or special:
        a.block = False
    if line_breaks:
        a.flow_plain = a.block_plain = False
    if flow_ind:
        a.flow_plain = False
    if block_ind:
        a.block_plain = False
    return a


_ESCAPES = {
    0x00: "0", 0x07: "a", 0x08: "b", 0x09: "t", 0x0A: "n", 0x0B: "v", 0x0C: "f", 0x0D: "r",
    0x1B: "e", 0x22: '"', 0x5C: "\\", 0x85: "N", 0xA0: "_", 0x2028: "L", 0x2029: "P",
}  # fmt: skip

PLAIN, SINGLE, DOUBLE, LITERAL = "plain", "single", "double", "literal"


@dataclass
class _Scalar:
    value: str
    style: str  # requested style


class _Emitter:
    def __init__(self, best_indent: int = 2) -> None:
        self.out: list[str] = []
        self.best_indent = best_indent
        self.column = 0
        self.whitespace = True
        self.indention = True
        self.indent = -1
        self.indents: list[int] = []
        self.flow_level = 0
        self.open_ended = False

    # -- low level writers
    def put(self, s: str) -> None:
        self.out.append(s)
        self.column += len(s)

    def put_break(self) -> None:
        self.out.append("\n")
        self.column = 0
        self.indention = True

    def write_indent(self) -> None:
        indent = max(self.indent, 0)
        if (
            not self.indention
            or self.column > indent
            or (self.column == indent and not self.whitespace)
        ):
            self.put_break()
        if self.column < indent:
            self.put(" " * (indent - self.column))
        self.whitespace = True

    def write_indicator(self, ind: str, need_ws: bool, is_ws: bool, is_indention: bool) -> None:
        if need_ws and not self.whitespace:
            self.put(" ")
        self.put(ind)
        self.whitespace = is_ws
        self.indention = self.indention and is_indention
        self.open_ended = False

    def increase_indent(self, flow: bool, parent_is_seq_item: bool) -> None:
        self.indents.append(self.indent)
        if self.indent < 0:
            self.indent = self.best_indent if flow else 0
        elif parent_is_seq_item:
            self.indent += 2
        else:
            b = self.best_indent
            self.indent = b * ((self.indent + b) // b)

    def pop_indent(self) -> None:
        self.indent = self.indents.pop()

    # -- nodes
    def node(
        self, node: Any, *, root: bool, seq_item: bool, mapping: bool, simple_key: bool
    ) -> None:
        if isinstance(node, _Scalar):
            self.scalar(node, root=root, seq_item=seq_item, simple_key=simple_key)
        elif isinstance(node, Flow) or (isinstance(node, list) and (self.flow_level or not node)):
            items = node.items if isinstance(node, Flow) else node
            self.flow_sequence(items, seq_item=seq_item)
        elif isinstance(node, list):
            self.block_sequence(node, seq_item=seq_item)
        elif isinstance(node, _Map):
            if self.flow_level or not node.items:
                self.flow_mapping(node, seq_item=seq_item)
            else:
                self.block_mapping(node, seq_item=seq_item)
        else:  # pragma: no cover - callers convert values first
            raise TypeError(f"cannot emit {type(node).__name__}")

    def block_sequence(self, items: list[Any], *, seq_item: bool) -> None:
        self.increase_indent(False, seq_item)
        for item in items:
            self.write_indent()
            self.write_indicator("-", True, False, True)
            self.node(item, root=False, seq_item=True, mapping=False, simple_key=False)
        self.pop_indent()

    def flow_sequence(self, items: list[Any], *, seq_item: bool) -> None:
        self.write_indicator("[", True, True, False)
        self.increase_indent(True, seq_item)
        self.flow_level += 1
        for i, item in enumerate(items):
            if i:
                self.write_indicator(",", False, False, False)
            if self.column == 0:
                self.write_indent()
            self.node(item, root=False, seq_item=False, mapping=False, simple_key=False)
        self.flow_level -= 1
        self.pop_indent()
        if self.column == 0:
            self.write_indent()
        self.write_indicator("]", False, False, False)

    def _simple_key(self, key: Any) -> bool:
        if isinstance(key, _Scalar):
            return not _analyze(key.value).multiline and len(key.value.encode("utf-8")) <= 128
        if isinstance(key, list | Flow):
            return not (key.items if isinstance(key, Flow) else key)
        if isinstance(key, _Map):
            return not key.items
        return False

    def block_mapping(self, node: _Map, *, seq_item: bool) -> None:
        self.increase_indent(False, seq_item)
        for key, value in node.items:
            self.write_indent()
            if self._simple_key(key):
                self.node(key, root=False, seq_item=False, mapping=True, simple_key=True)
                self.write_indicator(":", False, False, False)
            else:
                self.write_indicator("?", True, False, True)
                self.node(key, root=False, seq_item=False, mapping=True, simple_key=False)
                self.write_indent()
                self.write_indicator(":", True, False, True)
            self.node(value, root=False, seq_item=False, mapping=True, simple_key=False)
        self.pop_indent()

    def flow_mapping(self, node: _Map, *, seq_item: bool) -> None:
        self.write_indicator("{", True, True, False)
        self.increase_indent(True, seq_item)
        self.flow_level += 1
        for i, (key, value) in enumerate(node.items):
            if i:
                self.write_indicator(",", False, False, False)
            if self.column == 0:
                self.write_indent()
            if self._simple_key(key):
                self.node(key, root=False, seq_item=False, mapping=True, simple_key=True)
                self.write_indicator(":", False, False, False)
            else:
                self.write_indicator("?", True, False, False)
                self.node(key, root=False, seq_item=False, mapping=True, simple_key=False)
                self.write_indicator(":", True, False, False)
            self.node(value, root=False, seq_item=False, mapping=True, simple_key=False)
        self.flow_level -= 1
        self.pop_indent()
        self.write_indicator("}", False, False, False)

    def scalar(self, node: _Scalar, *, root: bool, seq_item: bool, simple_key: bool) -> None:
        value = node.value
        a = _analyze(value)
        style = node.style
        if simple_key and a.multiline:
            style = DOUBLE
        if style == PLAIN:
            if (self.flow_level and not a.flow_plain) or (
                not self.flow_level and not a.block_plain
            ):
                style = SINGLE
            if not value and (self.flow_level or simple_key):
                style = SINGLE
        if style == SINGLE and not a.single_quoted:
            style = DOUBLE
        if style == LITERAL and (not a.block or self.flow_level or simple_key):
            style = DOUBLE
        self.increase_indent(True, seq_item)
        if style == PLAIN:
            self.write_plain(value, root)
        elif style == SINGLE:
            self.write_single(value)
        elif style == DOUBLE:
            self.write_double(value)
        else:
            self.write_literal(value)
        self.pop_indent()

    def write_plain(self, value: str, root: bool) -> None:
        if value and not self.whitespace:
            self.put(" ")
        breaks = False
        for ch in value:
            if ch in _BREAKS:
                if not breaks and ch == "\n":
                    self.put_break()
                self._write_break(ch)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(ch)
                if ch != " ":
                    self.indention = False
                    breaks = False
        if value:
            self.whitespace = False
        self.indention = False
        if root:
            self.open_ended = True

    def _write_break(self, ch: str) -> None:
        if ch == "\n":
            self.put_break()
        else:
            self.out.append(ch)
            self.column = 0
            self.indention = True

    def write_single(self, value: str) -> None:
        self.write_indicator("'", True, False, False)
        breaks = False
        for ch in value:
            if ch == " ":
                self.put(ch)
            elif ch in _BREAKS:
                if not breaks and ch == "\n":
                    self.put_break()
                self._write_break(ch)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                if ch == "'":
                    self.put("'")
                self.put(ch)
                self.indention = False
                breaks = False
        self.write_indicator("'", False, False, False)
        self.whitespace = False
        self.indention = False

    def write_double(self, value: str) -> None:
        self.write_indicator('"', True, False, False)
        bom = value.startswith("\ufeff")
        parts: list[str] = []
        for ch in value:
            c = ord(ch)
            if not _is_printable(ch) or bom or ch in _BREAKS or ch in '"\\':
                if c in _ESCAPES:
                    parts.append("\\" + _ESCAPES[c])
                elif c <= 0xFF:
                    parts.append(f"\\x{c:02X}")
                elif c <= 0xFFFF:
                    parts.append(f"\\u{c:04X}")
                else:
                    parts.append(f"\\U{c:08X}")
            else:
                parts.append(ch)
        self.put("".join(parts))
        self.write_indicator('"', False, False, False)
        self.whitespace = False
        self.indention = False

    def write_literal(self, value: str) -> None:
        self.write_indicator("|", True, False, False)
        # block scalar hints
        if value[:1] == " " or (value[:1] in _BREAKS and value):
            self.write_indicator(str(self.best_indent), False, False, False)
        self.open_ended = False
        chomp = ""
        if not value or value[-1] not in _BREAKS:
            chomp = "-"
        elif len(value) == 1 or value[-2] in _BREAKS:
            chomp = "+"
            self.open_ended = True
        if chomp:
            self.write_indicator(chomp, False, False, False)
        self.put_break()
        self.whitespace = True
        breaks = True
        for ch in value:
            if ch in _BREAKS:
                self._write_break(ch)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(ch)
                self.indention = False
                breaks = False


@dataclass
class _Map:
    items: list[tuple[Any, Any]]


def _natural_less(a: str, b: str) -> bool:
    """yaml.v3's map key order (sorter.go keyList.Less) for two string keys."""
    digits = False
    for i in range(min(len(a), len(b))):
        ca, cb = a[i], b[i]
        if ca == cb:
            digits = ca.isdecimal()
            continue
        al, bl = ca.isalpha(), cb.isalpha()
        if al and bl:
            return ca < cb
        if al or bl:
            return al if digits else bl
        an = bn = 0
        if ca == "0" or cb == "0":
            j = i - 1
            while j >= 0 and a[j].isdecimal():
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and a[ai].isdecimal():
            an = an * 10 + (ord(a[ai]) - 48)
            ai += 1
        bi = i
        while bi < len(b) and b[bi].isdecimal():
            bn = bn * 10 + (ord(b[bi]) - 48)
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ca < cb
    return len(a) < len(b)


def _sort_keys(keys: list[Any]) -> list[Any]:
    import functools

    def cmp(x: Any, y: Any) -> int:
        if isinstance(x, str) and isinstance(y, str):
            if _natural_less(x, y):
                return -1
            if _natural_less(y, x):
                return 1
            return 0
        xn = isinstance(x, int | float) and not isinstance(x, str)
        yn = isinstance(y, int | float) and not isinstance(y, str)
        if xn and yn:
            return -1 if x < y else (1 if x > y else 0)
        # different kinds: Go orders by reflect.Kind (bool < ints < floats < ... < string)
        return -1 if _kind(x) < _kind(y) else (1 if _kind(x) > _kind(y) else 0)

    return sorted(keys, key=functools.cmp_to_key(cmp))


def _kind(v: Any) -> int:
    if v is None:
        return 20
    if isinstance(v, bool):
        return 1
    if isinstance(v, int):
        return 2
    if isinstance(v, float):
        return 14
    if isinstance(v, str):
        return 24
    return 30


def scalar_text(value: Any) -> _Scalar:
    """How yaml.v3 writes a Go value of type string/int/float/bool/nil."""
    if value is None:
        return _Scalar("null", PLAIN)
    if value is True:
        return _Scalar("true", PLAIN)
    if value is False:
        return _Scalar("false", PLAIN)
    if isinstance(value, int):
        return _Scalar(str(value), PLAIN)
    if isinstance(value, float):
        return _Scalar(go_format_float_g(value), PLAIN)
    text = str(value)
    rtag = resolve_plain(text)[0] if text else NULL_TAG
    can_plain = rtag in (STR_TAG,) and not (
        (text[:1] in "+-0123456789" and ":" in text and _BASE60_FLOAT.match(text))
        or text in _OLD_BOOLS
    )
    if "\n" in text:
        return _Scalar(text, LITERAL)
    return _Scalar(text, PLAIN if can_plain else DOUBLE)


def to_emit_tree(value: Any, *, sort_maps: bool = True) -> Any:
    """Convert plain Python data to the emitter's tree; dicts are sorted as Go maps are unless
    they are :class:`Struct` instances (ordered fields)."""
    if isinstance(value, Struct):
        return _Map([(scalar_text(k), to_emit_tree(v)) for k, v in value.fields])
    if isinstance(value, Flow):
        return Flow([to_emit_tree(v) for v in value.items])
    if isinstance(value, Mapping):
        keys = _sort_keys(list(value.keys())) if sort_maps else list(value.keys())
        return _Map([(scalar_text(k), to_emit_tree(value[k])) for k in keys])
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [to_emit_tree(v) for v in value]
    return scalar_text(value)


@dataclass
class Struct:
    """An ordered list of (field name, value): a Go struct after omitempty was applied."""

    fields: list[tuple[str, Any]]


def dump(value: Any) -> str:
    """Encode ``value`` as yaml.v3's Encoder with SetIndent(2) does (one document)."""
    tree = to_emit_tree(value)
    em = _Emitter(2)
    em.node(tree, root=True, seq_item=False, mapping=False, simple_key=False)
    em.write_indent()
    return "".join(em.out)
