"""A JSON encoder that writes the exact bytes of Go's ``encoding/json.Marshal``.

kit stores configs and manifests as ``json.Marshal`` output, and digests are taken over those
bytes, so kitflow must match Go's escaping and number formatting, not Python's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from kitflow.errors import KitflowError

_HEX = "0123456789abcdef"


class GoJSONError(KitflowError):
    """A value Go's json.Marshal would refuse (NaN, Inf, a map with non-string keys, ...)."""


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == '"':
        return '\\"'
    if ch == "\\":
        return "\\\\"
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    if code < 0x20 or ch in "<>&" or code in (0x2028, 0x2029):
        return "\\u" + "".join(_HEX[(code >> s) & 0xF] for s in (12, 8, 4, 0))
    return ch


# Characters that need an escape; everything else is copied as is (non-ASCII stays raw UTF-8).
_NEEDS_ESCAPE = {chr(c) for c in range(0x20)} | {'"', "\\", "<", ">", "&", "\u2028", "\u2029"}
_ESCAPES = {ch: _escape_char(ch) for ch in _NEEDS_ESCAPE}


def go_string(value: str) -> str:
    """Quote ``value`` as Go's encoding/json does (HTML-safe escaping).

    Lone surrogates (invalid UTF-8 in Go terms) become U+FFFD, as Go does for invalid bytes.
    """
    out = ['"']
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of a positive finite float and its decimal point
    position (value = 0.DIGITS * 10**point), as Go's strconv shortest mode gives them."""
    text = repr(value)
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + exponent
    if not digits:
        return "0", 1
    # leading zeros removed from the digit string shift the decimal point
    point -= len(whole + frac) - len((whole + frac).lstrip("0"))
    digits = digits.rstrip("0") or "0"
    return digits, point


def go_float(value: float) -> str:
    """Format a float64 as encoding/json does: shortest digits, 'f' form unless the magnitude is
    below 1e-6 or at least 1e21, exponent without zero padding (``1e-7``, ``1e+21``)."""
    if math.isnan(value) or math.isinf(value):
        raise GoJSONError(f"json: unsupported value: {value!r} (NaN and Inf cannot be stored)")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    absval = abs(value)
    digits, point = _shortest_digits(absval)
    if absval < 1e-6 or absval >= 1e21:
        exp = point - 1
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        exp_sign = "-" if exp < 0 else "+"
        exp_abs = abs(exp)
        exp_text = f"{exp_abs:02d}"
        if exp_sign == "-" and exp_abs < 10:
            exp_text = str(exp_abs)  # Go's json cleans e-07 to e-7 (but keeps e+06 style for +)
        return f"{sign}{mant}e{exp_sign}{exp_text}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _encode(obj: Any, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(go_string(obj))
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        out.append(go_float(obj))
    elif isinstance(obj, Mapping):
        out.append("{")
        first = True
        for key, value in obj.items():
            if not isinstance(key, str):
                raise GoJSONError(
                    f"json: unsupported map key {key!r}: only string keys can be stored"
                )
            if not first:
                out.append(",")
            first = False
            out.append(go_string(key))
            out.append(":")
            _encode(value, out)
        out.append("}")
    elif isinstance(obj, Sequence) and not isinstance(obj, bytes | bytearray):
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _encode(value, out)
        out.append("]")
    else:
        raise GoJSONError(f"json: unsupported type: {type(obj).__name__}")


def go_json_dumps(obj: Any) -> bytes:
    """Compact JSON bytes exactly as Go's ``json.Marshal`` writes them.

    Dict key order is kept as given (callers order struct fields; Go sorts ``map`` keys, so use
    :func:`sorted_map` for values that were Go maps).
    """
    out: list[str] = []
    _encode(obj, out)
    return "".join(out).encode("utf-8", "surrogatepass")


def sorted_map(obj: Any) -> Any:
    """Recursively sort dict keys (byte order of their UTF-8), as Go marshals ``map[string]any``."""
    if isinstance(obj, Mapping):
        items = sorted(obj.items(), key=lambda kv: str(kv[0]).encode("utf-8", "surrogatepass"))
        return {k: sorted_map(v) for k, v in items}
    if isinstance(obj, list | tuple):
        return [sorted_map(v) for v in obj]
    return obj
