"""ONNX Runtime's basic-level rewrite rules that remove a node outright: PadFusion (a zero constant Pad
taken into the pads of the Conv or AveragePool reading it), FuseReluClip, DivMulFusion and NotWhereFusion.
Each is a `Rule` named after the ORT transformer it mirrors, its conditions those onnxruntime 1.32 applies,
checked on synthetic graphs (tests/test_fusion_ort_level1.py; onnxruntime/core/optimizer/pad_fusion.cc,
relu_clip_fusion.cc, div_mul_fusion.cc, not_where_fusion.cc). The removed node is folded (`part.folded`)
into the group of the node that takes its work, as a BatchNormalization into its Conv."""

from __future__ import annotations

import numpy as np

from .chains import CYCLE
from .context import Context, FusionPass, Rule, Step
from .ort_fold import load_time_value
from .partition import Partition

# The ops whose pads a Pad joins in onnxruntime 1.32 (not MaxPool: a pool pads with -inf, a Pad with zeros;
# checked, ORT leaves the Pad in front of a MaxPool).
PAD_TAKERS = frozenset({"Conv", "AveragePool"})


def _zero_constant_pad(ctx: Context, taker: str, pad: str) -> str | None:
    """ORT's PadFusion conditions on the Pad: constant mode, no axes input, pads and value known at load, the
    value zero, pads non-negative and on the spatial dims only (none on batch or channels)."""
    n = ctx.graph.by_name[pad]
    mode = n.attr("mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
        return f"mode {mode!r}: only a constant Pad becomes a conv's or pool's padding"
    if ctx.graph.opsets.get("", 0) >= 11:
        if len(n.inputs) > 3:
            return "it has an axes input: ORT fuses no Pad that names its axes"
        pads = load_time_value(ctx, n.inputs[1]) if len(n.inputs) > 1 and n.inputs[1] else None
        if pads is None:
            return "its pads are known only at run time"
        value = None
        if len(n.inputs) > 2 and n.inputs[2]:
            value = load_time_value(ctx, n.inputs[2])
            if value is None:
                return "its constant value is known only at run time"
    else:
        pads, value = n.attr("pads"), None
        if pads is None:
            return "no pads attribute"
        if n.attr("value", 0.0) != 0.0:  # an attribute, compared as a float (-0.0 is zero here)
            return f"it pads with {n.attr('value')}, not zero"
    # ORT compares the value input's bytes with zeros: -0.0 is no zero to it
    if value is not None and any(np.asarray(value).tobytes()):
        return f"it pads with {np.asarray(value).ravel()[:1].tolist()}, not zero (all bytes 0)"
    pads = [int(p) for p in np.asarray(pads).ravel()]
    half = len(pads) // 2
    if len(pads) < 4 or any(pads[i] for i in (0, 1, half, half + 1)):
        return f"pads {pads} pad the batch or channel dim, not only the spatial ones"
    if any(p < 0 for p in pads):
        return f"pads {pads} crop (a negative pad)"
    return None


def _explicit_pads(ctx: Context, pad: str, taker: str) -> str | None:
    n = ctx.graph.by_name[taker]
    auto = n.attr("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto != "NOTSET":
        return f"auto_pad {auto}: ORT folds a Pad only into explicit pads"
    if len([o for o in n.outputs if o]) > 1:
        return "it has a second output"
    if n.inputs[0] not in (ctx.graph.by_name[pad].outputs[0], *_cast_of(ctx, pad)):
        return "it reads the padded tensor as other than its data input"
    return None


def _cast_of(ctx: Context, pad: str) -> list[str]:
    readers = ctx.readers(ctx.graph.by_name[pad].outputs[0])
    return [ctx.graph.by_name[readers[0]].outputs[0]] if len(readers) == 1 and ctx.op(readers[0]) == "Cast" \
        else []


PAD_FUSION = Rule("PadFusion", (
    Step("pad", ops=frozenset({"Pad"}), check=_zero_constant_pad),
    Step("taker", ops=PAD_TAKERS, check=_explicit_pads),
), mirrors="ORT PadFusion (a zero constant Pad on the spatial dims joins the pads of the Conv or "
           "AveragePool reading it: its work disappears)")


class PadFusionPass(FusionPass):
    name = "pad_fusion"
    help = ("fold a zero constant Pad on the spatial dims into the pads of the Conv or AveragePool that "
            "alone reads it (ORT PadFusion: its work disappears)")
    rules = (PAD_FUSION,)

    def apply(self, ctx: Context, part: Partition) -> None:
        rule = PAD_FUSION
        for n in ctx.matching(rule.steps[0]):
            if n.name in part.folded or not ctx.real(n.name):
                continue
            if reason := ctx.single_use(n.outputs[0]):
                self.reject(rule, n.name, reason)
                continue
            taker = into = ctx.readers(n.outputs[0])[0]
            if ctx.op(taker) == "Cast":
                # ORT looks through one Cast (the Pad's value recast to its type), from opset 11 on: the
                # Pad joins the Cast's kernel (or none, where the Cast is a no-op), not the conv's
                if reason := ctx.single_use(ctx.graph.by_name[taker].outputs[0]) or (
                        "a Cast between them: ORT fuses through one from opset 11 on"
                        if ctx.graph.opsets.get("", 0) < 11 else None):
                    self.reject(rule, n.name, f"its reader {taker} (Cast): {reason}")
                    continue
                taker = ctx.readers(ctx.graph.by_name[taker].outputs[0])[0]
            if not rule.steps[1].matches(ctx, taker):
                self.reject(rule, n.name, f"its reader {taker} ({ctx.op(taker)}) is no Conv or AveragePool")
                continue
            pg, tg = part.group_of[n.name], part.group_of[into]
            if pg == tg:
                continue
            reason = (rule.steps[0].refuses(ctx, taker, n.name) or rule.steps[1].refuses(ctx, n.name, taker)
                      or (f"already fused with {len(ctx.real_members(part, pg)) - 1} other op(s)"
                          if len(ctx.real_members(part, pg)) != 1 else None))
            if reason:
                self.reject(rule, n.name, reason, anchor=taker)
            elif self.merge(part, {pg, tg}, rule.name, taker, "pad") is not None:
                part.folded.add(n.name)
            else:
                self.reject(rule, n.name, CYCLE, anchor=taker)


def _uses(ctx: Context, tensor: str) -> list[str]:
    """The readers of a tensor, one entry per input that reads it (ORT's output edges)."""
    readers = {c.name: c for c in ctx.graph.consumers.get(tensor, ())}.values()
    return [c.name for c in readers for t in c.inputs if t == tensor]


def _removable(ctx: Context, node: str, readers: int | None = 1) -> str | None:
    out = ctx.graph.by_name[node].outputs[0]
    if out in ctx.outputs:
        return f"its result {out!r} is a graph output"
    uses = _uses(ctx, out)
    if readers is not None and len(uses) != readers:
        return f"its result is read {len(uses)} times, not {readers}"
    return None


def _clip_min(ctx: Context, relu: str, clip: str) -> str | None:
    """FuseReluClip: the Clip's min (raised to 0 where below) absent or known at load; its max may be
    anything."""
    n = ctx.graph.by_name[clip]
    if n.inputs[0] != ctx.graph.by_name[relu].outputs[0]:
        return "it reads the Relu's result as a bound, not as its data"
    if len(n.inputs) > 1 and n.inputs[1] and load_time_value(ctx, n.inputs[1]) is None:
        return "its min is known only at run time"
    return None


def _one_over(ctx: Context, mul: str, div: str) -> str | None:
    """DivMulFusion: the Div computes 1 / x, its 1 a constant of one element."""
    n = ctx.graph.by_name[div]
    one = load_time_value(ctx, n.inputs[0])
    if one is None:
        return "its dividend is known only at run time"
    if np.asarray(one).size != 1 or np.asarray(one).ravel()[0] != 1:
        return f"its dividend {np.asarray(one).ravel()[:2].tolist()} is not a single 1"
    return None


def _condition(ctx: Context, where: str, nott: str) -> str | None:
    """NotWhereFusion: every reader of the Not's result reads it as a Where's condition."""
    out = ctx.graph.by_name[nott].outputs[0]
    for c in ctx.graph.consumers.get(out, ()):
        if c.op_type != "Where" or c.domain != "" or any(t == out for t in c.inputs[1:]):
            return f"{c.name} ({c.op_type}) reads its result, not as a Where's condition"
    return None


RELU_CLIP = Rule("FuseReluClip", (
    Step("relu", ops=frozenset({"Relu"}), check=lambda ctx, c, n: _removable(ctx, n)),
    Step("clip", ops=frozenset({"Clip"}), check=_clip_min),
), mirrors="ORT FuseReluClip (a Relu read only by a Clip is dropped, the Clip's min raised to 0: its work "
           "disappears)")

DIV_MUL = Rule("DivMulFusion", (
    Step("div", ops=frozenset({"Div"}), check=lambda ctx, m, n: _removable(ctx, n) or _one_over(ctx, m, n)),
    Step("mul", ops=frozenset({"Mul"})),
), mirrors="ORT DivMulFusion (1 / x read only by a Mul: the Mul becomes y / x, one op's work disappears)")

NOT_WHERE = Rule("NotWhereFusion", (
    Step("not", ops=frozenset({"Not"}),
         check=lambda ctx, w, n: _removable(ctx, n, None) or _condition(ctx, w, n)),
    Step("where", ops=frozenset({"Where"})),
), mirrors="ORT NotWhereFusion (a Not read only as Wheres' condition is dropped, their branches swapped: its "
           "work disappears)")


class OrtLevel1Pass(FusionPass):
    name = "ort_level1"
    help = ("drop what ORT's basic rewrite rules remove: a Relu before a Clip (FuseReluClip), 1 / x before a "
            "Mul (DivMulFusion), a Not before Wheres (NotWhereFusion); their work disappears")
    rules = (RELU_CLIP, DIV_MUL, NOT_WHERE)

    def apply(self, ctx: Context, part: Partition) -> None:
        for rule in self.rules:
            first, second = rule.steps
            for n in ctx.matching(first):
                if n.name in part.folded or not ctx.real(n.name) or n.domain != "":
                    continue
                out = n.outputs[0]
                readers = [c for c in ctx.graph.consumers.get(out, ()) if second.matches(ctx, c.name)]
                if not readers:
                    continue  # no candidate: its reader fits no step
                into = readers[0].name
                pg, tg = part.group_of[n.name], part.group_of[into]
                if pg == tg:
                    continue
                reason = (first.refuses(ctx, into, n.name) or second.refuses(ctx, n.name, into)
                          or (f"already fused with {len(ctx.real_members(part, pg)) - 1} other op(s)"
                              if len(ctx.real_members(part, pg)) != 1 else None))
                if reason:
                    self.reject(rule, n.name, reason, anchor=into)
                elif self.merge(part, {pg, tg}, rule.name, into, first.name) is not None:
                    part.folded.add(n.name)
                else:
                    self.reject(rule, n.name, CYCLE, anchor=into)
