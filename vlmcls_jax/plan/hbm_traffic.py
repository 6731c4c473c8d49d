"""The bytes a TPU program moves to and from HBM, read from its optimised HLO (`compiled.as_text()`).

XLA's `cost_analysis()["bytes accessed"]` counts every operand and result of every top-level op, wherever it
lives.  A TPU program brings most weights into on-chip memory first (an asynchronous `copy-start` or
`slice-start` into memory space 1, `S(1)` in the layout) and the fusion then reads them there, so a weight byte
read once from HBM is counted about three times (the HBM read, the on-chip write, the fusion's on-chip read).
What bounds a memory-bound program (a decode step) is the HBM traffic alone; this module counts it:

  * an async copy (`copy-start`): its source if in HBM (read) and its destination if in HBM (write);
  * an async slice (`slice-start`): the slice's bytes, read if its source is in HBM, written if its
    destination is;
  * any other top-level op (fusion, copy, collective, dynamic-update-slice, ...): each operand in HBM (read,
    whole: an upper bound for ops that read part of one, such as a gather from the embedding table) and each
    result in HBM (written); an in-place update of an HBM buffer (a `dynamic-update-slice`, or a fusion whose
    root is one, with its result in HBM) reads its other operands and writes only the update;
  * bookkeeping ops (parameter, constant, tuple, get-tuple-element, bitcast, the `-done` halves of async ops,
    partition-id, ...) move nothing.

Memory space 0 (no `S(n)` in a layout) is HBM.  Sizes are elements x bytes per element, without the tiles'
padding.  Only the entry computation is walked (and the bodies of top-level `call`s, `conditional`s (every
branch: an upper bound) and `while`s, each counted once: `HbmTraffic.loops` says how many loop bodies were).
"""

from __future__ import annotations

import dataclasses
import math
import re

ELEMENT_BYTES = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "bf16": 2, "f16": 2,
                 "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8,
                 "c128": 16, "token": 0}
MOVES_NOTHING = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "copy-done", "slice-done",
                 "all-reduce-done", "all-gather-done", "collective-permute-done", "send-done", "recv-done",
                 "partition-id", "replica-id", "after-all", "opt-barrier", "iota"}
CONTROL = {"call", "conditional", "while"}

# `%name = SHAPE opcode(operands), attributes`; SHAPE is an array shape or a (nested) tuple of them.
_INSTRUCTION = re.compile(r"^\s*(ROOT\s+)?%([\w.\-]+)\s*=\s*(.*)$")
_ARRAY = re.compile(r"([a-z][a-z0-9]*)\[([0-9,]*)\](\{[^}]*\})?")


@dataclasses.dataclass(frozen=True)
class Array:
    """One array of a shape: its bytes and whether it lives in HBM (memory space 0)."""
    nbytes: float
    in_hbm: bool


@dataclasses.dataclass
class HbmTraffic:
    read: float = 0.0             # bytes read from HBM
    written: float = 0.0          # bytes written to HBM
    loops: int = 0                # while-loop bodies counted (once each)

    @property
    def total(self) -> float:
        return self.read + self.written


def _split_shape(text: str) -> tuple[str, str]:
    """(the shape at the start of `text`, the rest)."""
    if not text.startswith("("):
        m = _ARRAY.match(text)
        if m is None:
            raise ValueError(f"no HLO shape at {text[:80]!r}")
        return text[:m.end()], text[m.end():]
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return text[:i + 1], text[i + 1:]
    raise ValueError(f"unbalanced tuple shape at {text[:80]!r}")


def arrays(shape: str) -> list[Array]:
    """The arrays of an HLO shape, in order (a tuple's leaves flattened)."""
    out = []
    for element, dims, layout in _ARRAY.findall(shape):
        if element not in ELEMENT_BYTES:
            continue
        count = math.prod(int(d) for d in dims.split(",") if d) if dims else 1
        out.append(Array(count * ELEMENT_BYTES[element], "S(" not in layout or "S(0)" in layout))
    return out


def _tuple_elements(shape: str) -> list[str]:
    """The top-level elements of a tuple shape `(a, (b, c), d)`."""
    inner, out, depth, start = shape[1:-1], [], 0, 0
    for i, ch in enumerate(inner):
        depth += ch in "({["
        depth -= ch in ")}]"
        if ch == "," and depth == 0:
            out.append(inner[start:i].strip())
            start = i + 1
    out.append(inner[start:].strip())
    return out


@dataclasses.dataclass
class Instruction:
    name: str
    shape: str
    opcode: str
    operands: list[str]
    attributes: str
    is_root: bool = False


def _parse(line: str) -> Instruction | None:
    m = _INSTRUCTION.match(line)
    if m is None:
        return None
    root, name, rest = m.groups()
    shape, rest = _split_shape(rest.strip())
    op = re.match(r"\s*([\w\-]+)\(", rest)
    if op is None:
        return None
    depth, i = 0, op.end() - 1
    for i in range(op.end() - 1, len(rest)):
        depth += rest[i] == "("
        depth -= rest[i] == ")"
        if depth == 0:
            break
    operands = re.findall(r"%([\w.\-]+)", rest[op.end():i])
    return Instruction(name, shape, op.group(1), operands, rest[i + 1:], root is not None)


def computations(hlo_text: str) -> tuple[dict[str, list[Instruction]], str]:
    """{computation name: its instructions} of a module's text, and the entry computation's name."""
    comps, current, entry = {}, None, None
    for line in hlo_text.splitlines():
        header = re.match(r"^(ENTRY\s+)?%([\w.\-]+)\s*\(.*\{\s*$", line)
        if header:
            current = header.group(2)
            comps[current] = []
            if header.group(1):
                entry = current
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is not None:
            instruction = _parse(line)
            if instruction is not None:
                comps[current].append(instruction)
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text")
    return comps, entry


def _called(attributes: str, key: str) -> list[str]:
    """The computations an attribute names: `key=%name` or `key={%a, %b}`."""
    m = re.search(r"\b" + key + r"=(\{[^}]*\}|%?[\w.\-]+)", attributes)
    return re.findall(r"%?([\w.\-]+)", m.group(1)) if m else []


def hbm_traffic(hlo_text: str) -> HbmTraffic:
    """HBM bytes read and written by one execution of the program (see the module docstring for the rules)."""
    comps, entry = computations(hlo_text)
    shapes = {ins.name: ins.shape for instructions in comps.values() for ins in instructions}
    roots = {name: ins for name, instructions in comps.items() for ins in instructions if ins.is_root}
    traffic = HbmTraffic()

    def hbm(shape: str) -> float:
        return sum(a.nbytes for a in arrays(shape) if a.in_hbm)

    def walk(name: str):
        for ins in comps[name]:
            op = ins.opcode
            if op in MOVES_NOTHING:
                continue
            if op in CONTROL:
                if op == "while":
                    bodies = _called(ins.attributes, "body")
                elif op == "conditional":   # every branch: an upper bound
                    bodies = _called(ins.attributes, "branch_computations") or (
                        _called(ins.attributes, "true_computation") + _called(ins.attributes, "false_computation"))
                else:
                    bodies = _called(ins.attributes, "to_apply")
                traffic.loops += op == "while"
                for body in bodies:
                    walk(body)
                continue
            if op == "copy-start":
                destination = _tuple_elements(ins.shape)[0]
                traffic.read += hbm(shapes[ins.operands[0]])
                traffic.written += hbm(destination)
                continue
            if op == "slice-start":
                elements = _tuple_elements(ins.shape)
                piece = sum(a.nbytes for a in arrays(elements[1]))
                traffic.read += piece if hbm(shapes[ins.operands[0]]) else 0.0
                traffic.written += hbm(elements[1])
                continue
            fused = _called(ins.attributes, "calls") if op == "fusion" else []
            root = roots.get(fused[0]) if fused else ins
            if root is not None and root.opcode == "dynamic-update-slice" and hbm(ins.shape):
                # in place: the buffer (the operand shaped as the result) is neither read nor rewritten whole
                traffic.read += sum(hbm(shapes[o]) for o in ins.operands if o in shapes and shapes[o] != ins.shape)
                traffic.written += sum(a.nbytes for a in arrays(shapes[root.operands[1]]))
                continue
            traffic.read += sum(hbm(shapes[o]) for o in ins.operands if o in shapes)
            traffic.written += hbm(ins.shape)

    walk(entry)
    return traffic
