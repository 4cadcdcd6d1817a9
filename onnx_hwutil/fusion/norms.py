"""The GELU and LayerNorm families written as rules: each a `Rule` of `Step`s with op sets and checks.

NormPass (regions.py) finds where a decomposed GELU or norm lies (the nodes between a fan-out and where its
readers meet again, its body, then the constant-operand ops right after it, its tail); the family's rule
decides whether it is one: every node of the body must stand at one of the rule's body steps, every node of
the tail at one of its tail steps, and each step's check must accept it. A refusal names the node and the
step and says why in words a user can act on (a constant that is not sqrt(2), an epsilon known only at run
time). A constant whose value the file does not hold (external data, computed at load) is taken on trust.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .context import Context, Rule, Step

SQRT2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # FastGelu's tanh argument scale
GELU_CUBIC = 0.044715
RTOL = 1e-4  # the exporters write these constants as float32 (BERT's sqrt(2) is 1.4142099...)

# Nodes a decomposed pattern may carry, whatever the rule: in its body the casts of a mixed-precision export
# and the Q/DQ pairs of a QDQ export, after it (its tail) the Q/DQ that requantize its output; they run
# inside the kernel that holds them. No rule lists them as a step of its own (`explain` would name every rule
# for every Cast).
CARRIED = Step("carried", ops=frozenset({"Cast", "QuantizeLinear", "DequantizeLinear"}), at_most=16)
REQUANTIZE = Step("requantize", ops=frozenset({"QuantizeLinear", "DequantizeLinear"}), at_most=16)


def _values(ctx: Context, node: str, skip: int | None = None) -> tuple[list[str], list[float | None]]:
    """The constant operands of a node (other than input `skip`) and their scalar values (None: unknown or
    not a scalar)."""
    ins = ctx.graph.by_name[node].inputs
    consts = [t for i, t in enumerate(ins) if t and i != skip and ctx.constant(t)]
    vals: list[float | None] = []
    for t in consts:
        v = ctx.graph.constant_value(t)
        scalar = v is not None and v.size == 1 and v.dtype.kind in "fiu"
        vals.append(float(v.reshape(-1)[0]) if scalar else None)
    return consts, vals


def _close(v: float, want: float) -> bool:
    return abs(v - want) <= RTOL * abs(want)


def constant_is(want: float, what: str, operand: int | None = None):
    """A check: the node has a constant operand (input `operand` if given) equal to `want`."""

    def check(ctx: Context, anchor: str, node: str) -> str | None:
        ins = ctx.graph.by_name[node].inputs
        if operand is not None:
            t = ins[operand] if len(ins) > operand else ""
            if not t or not ctx.constant(t):
                return (f"its input {operand} {t!r} is computed at run time: {what} must be the constant "
                        f"{want:.6g}")
            v = ctx.graph.constant_value(t)
            if v is None or v.size != 1:
                return None  # the file does not hold the value: taken on trust
            got = float(v.reshape(-1)[0])
            return None if _close(got, want) else f"its constant {t!r} is {got:.6g}, not {what} ({want:.6g})"
        consts, vals = _values(ctx, node)
        if not consts:
            return f"no constant operand: {what} must be the constant {want:.6g}"
        if any(v is None or _close(v, want) for v in vals):
            return None
        return f"its constant {consts[0]!r} is {vals[0]:.6g}, not {what} ({want:.6g})"

    return check


def one_of(*checks):
    """A check that accepts what any of `checks` accepts, and otherwise gives the first one's reason."""

    def check(ctx: Context, anchor: str, node: str) -> str | None:
        reasons = [c(ctx, anchor, node) for c in checks]
        return None if any(r is None for r in reasons) else reasons[0]

    return check


def by_op(**checks):
    """A check chosen by the node's op (a step that takes a Div or a Mul checks each its own way)."""

    def check(ctx: Context, anchor: str, node: str) -> str | None:
        c = checks.get(ctx.op(node))
        return c(ctx, anchor, node) if c else None

    return check


def has_constant(what: str):
    def check(ctx: Context, anchor: str, node: str) -> str | None:
        if ctx.const_input(node):
            return None
        ins = [t for t in ctx.graph.by_name[node].inputs if t]
        return (f"every operand ({', '.join(map(repr, ins))}) is computed at run time: {what} must be a "
                "constant")

    return check


def run_time_operands(what: str):
    def check(ctx: Context, anchor: str, node: str) -> str | None:
        return f"a constant operand: {what} reads two run-time tensors" if ctx.const_input(node) else None

    return check


def _squares(ctx: Context, anchor: str, node: str) -> str | None:
    n = ctx.graph.by_name[node]
    if n.op_type == "Mul":
        return None if n.inputs[0] == n.inputs[1] else "a Mul of two different tensors: not x*x"
    return constant_is(2.0, "the exponent 2", operand=1)(ctx, anchor, node)


def _cube(ctx: Context, anchor: str, node: str) -> str | None:
    n = ctx.graph.by_name[node]
    if n.op_type == "Mul":
        return None if not ctx.const_input(node) else "a constant operand: not a product of x with itself"
    return constant_is(3.0, "the exponent 3", operand=1)(ctx, anchor, node)


def _last_axis(ctx: Context, anchor: str, node: str) -> str | None:
    n = ctx.graph.by_name[node]
    axes = n.attr("axes")
    if axes is None and len(n.inputs) > 1 and n.inputs[1]:
        v = ctx.graph.constant_value(n.inputs[1])
        axes = None if v is None else [int(a) for a in v.reshape(-1)]
    shape = ctx.graph.tensor(n.inputs[0]).shape if n.inputs else None
    if axes is None or shape is None:
        return None  # all axes (no attribute, no input) is refused by no runtime we mirror; unknown: trusted
    rank = len(shape)
    if [a % rank for a in axes] == [rank - 1]:
        return None
    return f"it averages over axes {list(axes)}, not the last one: a norm over features reduces the last axis"


def _inverse(ctx: Context, anchor: str, node: str) -> str | None:
    if ctx.op(node) == "Reciprocal":
        return None
    return constant_is(1.0, "a reciprocal's numerator", operand=0)(ctx, anchor, node)


def _normalize(ctx: Context, anchor: str, node: str) -> str | None:
    n = ctx.graph.by_name[node]
    if n.op_type == "Div" and ctx.constant(n.inputs[0]):
        return "its numerator is a constant: a reciprocal, not the input divided by its deviation"
    return run_time_operands("normalizing")(ctx, anchor, node)


@dataclass(frozen=True)
class Family:
    """A rule and which of its steps stand in the body (between the fan-out and where its readers meet) and
    which in the tail (the constant-operand ops right after); `label` names the kernel."""

    rule: Rule
    label: str
    body: tuple[str, ...]
    tail: tuple[str, ...]

    def steps(self, names: tuple[str, ...]) -> list[Step]:
        return [s for s in self.rule.steps if s.name in names]

    def fit(self, ctx: Context, nodes: list[str], anchor: str) -> tuple[str, str] | None:
        """Stand each node at a body step (each step as often as its `at_most`): None if all fit, else
        (the node that does not, why)."""
        used: dict[str, int] = {}
        body = self.steps(self.body)
        for m in nodes:
            if CARRIED.matches(ctx, m):
                continue
            fits = [s for s in body if s.matches(ctx, m)]
            if not fits:
                names = ", ".join(f"{s.name} ({'/'.join(sorted(s.ops or ()))})" for s in body)
                return m, f"a {ctx.op(m)} has no place in {self.rule.name}'s steps: {names}"
            free = [s for s in fits if used.get(s.name, 0) < s.at_most]
            if not free:
                return m, f"a second {fits[0].name} step ({ctx.op(m)}): {self.rule.name} has one"
            reasons = []
            for s in free:
                reason = s.refuses(ctx, anchor, m)
                if reason is None:
                    used[s.name] = used.get(s.name, 0) + 1
                    break
                reasons.append(f"{s.name}: {reason}")
            else:
                return m, "; ".join(reasons)
        return None

    def tail_step(self, ctx: Context, anchor: str, node: str,
                  taken: dict[str, int]) -> tuple[Step | None, str]:
        """The tail step the node may stand at ((None, why not) if none), each as often as its `at_most`."""
        tail = [*self.steps(self.tail), REQUANTIZE]
        fits = [s for s in tail if s.matches(ctx, node) and taken.get(s.name, 0) < s.at_most]
        if not fits:
            return None, ""
        reasons = []
        for s in fits:
            reason = s.refuses(ctx, anchor, node)
            if reason is None:
                return s, ""
            reasons.append(f"{s.name}: {reason}")
        return None, "; ".join(reasons)


GELU = Family(Rule("GeluFusion", (
    Step("scale", ops=frozenset({"Div", "Mul"}), check=by_op(
        Div=constant_is(SQRT2, "sqrt(2)", operand=1), Mul=constant_is(1 / SQRT2, "1/sqrt(2)"))),
    Step("erf", ops=frozenset({"Erf"})),
    Step("one", ops=frozenset({"Add"}), check=constant_is(1.0, "the 1 of 1 + erf")),
    Step("half", ops=frozenset({"Mul"}), check=constant_is(0.5, "the 0.5 of 0.5x")),
    Step("product", ops=frozenset({"Mul"}), check=run_time_operands("the product x * (1 + erf)")),
), mirrors="ORT GeluFusion: x * 0.5 * (1 + erf(x / sqrt(2))) as one Gelu"),
    "Gelu", body=("scale", "erf", "one", "half", "product"), tail=("half"))

def _half_of_x_or_product(ctx: Context, anchor: str, node: str) -> str | None:
    """ORT's GeluFusion takes the 0.5 only as (x * 0.5) * (1 + erf) or (x * (1 + erf)) * 0.5."""
    if reason := constant_is(0.5, "the 0.5 of 0.5x")(ctx, anchor, node):
        return reason
    x = ctx.graph.by_name[anchor].outputs[0]
    other = [t for t in ctx.graph.by_name[node].inputs if not ctx.constant(t)]
    prod = ctx.graph.producer.get(other[0]) if other else None
    if other == [x] or (prod is not None and prod.op_type == "Mul" and x in prod.inputs):
        return None
    what = other[0] if other else "?"
    return (f"the 0.5 multiplies {what!r}, neither x nor x * (1 + erf): ORT's GeluFusion "
            "matches only 0.5x * (1 + erf) and x * (1 + erf) * 0.5, so it runs this order (the torch dynamo "
            "exporter's) as separate Div, Erf, Add and Mul kernels")


GELU_ORT = Family(Rule("GeluFusion", (
    Step("scale", ops=frozenset({"Div"}), check=constant_is(SQRT2, "sqrt(2)", operand=1)),
    *GELU.rule.steps[1:3],
    Step("half", ops=frozenset({"Mul"}), check=_half_of_x_or_product),
    GELU.rule.steps[4],
), mirrors=GELU.rule.mirrors + " (ORT's exact patterns: x / sqrt(2), the 0.5 on x or on the product)"),
    "Gelu", body=GELU.body, tail=GELU.tail)

FAST_GELU = Family(Rule("FastGeluFusion", (
    Step("cube", ops=frozenset({"Pow", "Mul"}), check=_cube, at_most=2),  # x*x*x: two Muls
    Step("coefficient", ops=frozenset({"Mul"}), check=constant_is(GELU_CUBIC, "the cubic coefficient")),
    Step("inner", ops=frozenset({"Add"}), check=run_time_operands("x + 0.044715 x^3")),
    Step("scale", ops=frozenset({"Mul"}), check=constant_is(SQRT_2_OVER_PI, "sqrt(2/pi)")),
    Step("tanh", ops=frozenset({"Tanh"})),
    Step("one", ops=frozenset({"Add"}), check=constant_is(1.0, "the 1 of 1 + tanh")),
    Step("half", ops=frozenset({"Mul"}), check=constant_is(0.5, "the 0.5 of 0.5x")),
    Step("product", ops=frozenset({"Mul"}), check=run_time_operands("the product x * (1 + tanh)")),
), mirrors="ORT FastGeluFusion: the tanh approximation of GELU as one FastGelu"),
    "Gelu", body=("cube", "coefficient", "inner", "scale", "tanh", "one", "half", "product"),
    tail=("half"))

_NORM_TAIL = (
    Step("gamma", ops=frozenset({"Mul"}), check=has_constant("a LayerNorm's scale")),
    Step("beta", ops=frozenset({"Add"}), check=has_constant("a LayerNorm's bias")),
)

LAYER_NORM = Family(Rule("LayerNormFusion", (
    Step("mean", ops=frozenset({"ReduceMean"}), check=_last_axis, at_most=2),  # the mean, the variance
    Step("center", ops=frozenset({"Sub"}), check=run_time_operands("centering")),
    Step("square", ops=frozenset({"Pow", "Mul"}), check=_squares),
    Step("epsilon", ops=frozenset({"Add"}), check=has_constant("its epsilon")),
    Step("root", ops=frozenset({"Sqrt"})),
    Step("normalize", ops=frozenset({"Div"}), check=_normalize),
    *_NORM_TAIL,
), mirrors="ORT LayerNormFusion: (x - mean) / sqrt(var + eps) * gamma + beta as one LayerNormalization"),
    "LayerNorm", body=("mean", "center", "square", "epsilon", "root", "normalize"),
    tail=("gamma", "beta"))

RMS_NORM = Family(Rule("SimplifiedLayerNormFusion", (
    Step("square", ops=frozenset({"Pow", "Mul"}), check=_squares),
    Step("mean", ops=frozenset({"ReduceMean"}), check=_last_axis),
    Step("epsilon", ops=frozenset({"Add"}), check=has_constant("its epsilon")),
    Step("root", ops=frozenset({"Sqrt"})),
    Step("inverse", ops=frozenset({"Reciprocal", "Div"}), check=_inverse),
    Step("normalize", ops=frozenset({"Mul", "Div"}), check=_normalize),
    *_NORM_TAIL,
), mirrors="ORT SimplifiedLayerNormFusion: x / sqrt(mean(x^2) + eps) * gamma as one "
           "SimplifiedLayerNormalization (RMSNorm; also a LayerNorm's variance half when its mean half "
           "could not join)"),
    "RMSNorm", body=("square", "mean", "epsilon", "root", "inverse", "normalize"),
    tail=("gamma", "beta"))

# ORT 1.32 leaves Sqrt -> Reciprocal -> Mul unfused and fuses Sqrt -> Div(1, .) -> Mul (checked with synthetic
# graphs in tests/test_fusion_norms.py): its rule takes the reciprocal as a Div only.
RMS_NORM_ORT = Family(Rule("SimplifiedLayerNormFusion", tuple(
    Step("inverse", ops=frozenset({"Div"}), check=_inverse) if st.name == "inverse" else st
    for st in RMS_NORM.rule.steps), mirrors=RMS_NORM.rule.mirrors + "; ORT's: 1/x only as Div(1, x)"),
    "RMSNorm", body=RMS_NORM.body, tail=RMS_NORM.tail)

FAMILIES = (GELU, FAST_GELU, LAYER_NORM, RMS_NORM)


def family_rule(label: str, ops: set[str], exact: bool = False) -> Family | None:
    """The rule that decides a region labelled `label` whose ops are `ops` (None: the generic one); `exact`:
    only the patterns ONNX Runtime itself matches."""
    if label == "Gelu":
        return (GELU_ORT if exact else GELU) if "Erf" in ops else FAST_GELU
    return {"LayerNorm": LAYER_NORM, "RMSNorm": RMS_NORM_ORT if exact else RMS_NORM}.get(label)
