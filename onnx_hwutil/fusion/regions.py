"""Rules that take a whole region: decomposed norms and GELU (everything between a fan-out and the node
where its readers meet again), the residual Add before a LayerNorm, and attention around a Softmax."""

from __future__ import annotations

from .chains import CYCLE
from .context import (
    BROADCAST,
    ELEMENTWISE,
    MATMUL_OPS,
    REDUCTION,
    SHAPE,
    Context,
    FusionPass,
    Rule,
    Step,
    group_name,
)
from .norms import FAST_GELU, GELU, GELU_ORT, LAYER_NORM, RMS_NORM, RMS_NORM_ORT, Family, family_rule
from .ort_fold import ort_known_dims
from .partition import Partition

# Ops only a norm, GELU or softmax written out op by op has between a fan-out and where its readers meet.
NORM_SIGNATURE = frozenset({"Erf", "Tanh", "Exp", "Sqrt", "Pow", "ReduceMean", "ReduceSum", "ReduceMax",
                            "Reciprocal", "ReduceSumSquare", "ReduceL2"})
# The family a region belongs to, first match wins: each op set must meet the region's ops.
FAMILIES: tuple[tuple[str, tuple[frozenset[str], ...]], ...] = (
    ("Gelu", (frozenset({"Erf", "Tanh"}),)),  # erf form, and FastGelu's tanh form
    ("Softmax", (frozenset({"Exp"}), frozenset({"ReduceSum", "ReduceMax"}))),
    ("LayerNorm", (frozenset({"Sub"}), frozenset({"ReduceMean"}))),
    ("RMSNorm", (frozenset({"ReduceMean", "ReduceSumSquare"}),)),
)
_MEAN_HALF = frozenset({"ReduceMean", "Sub"})  # x - mean(x): where a decomposed LayerNorm starts
LAYER_NORM_OPS = frozenset({"LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization"})
SOFTMAX_OPS = frozenset({"Softmax", "LogSoftmax"})
_POINTWISE = frozenset({SHAPE, ELEMENTWISE, BROADCAST})


def _constant_operand(ctx: Context, start: str, node: str) -> str | None:
    return None if ctx.const_input(node) else "no constant operand"


def _runtime_operands(ctx: Context, norm: str, node: str) -> str | None:
    return "a constant operand: a bias, not a residual" if ctx.const_input(node) else None


DECOMPOSED_NORM = Rule("DecomposedNorm", (
    Step("body", kinds=frozenset({SHAPE, ELEMENTWISE, BROADCAST, REDUCTION})),
    Step("signature", ops=NORM_SIGNATURE),
    Step("tail", kinds=frozenset({ELEMENTWISE, BROADCAST}), check=_constant_operand),  # gamma, beta, x0.5
), mirrors="ORT LayerNormFusion, SimplifiedLayerNormFusion, GeluFusion, FastGeluFusion (by region)")

SKIP_LAYER_NORM = Rule("SkipLayerNormFusion", (
    Step("residual", ops=frozenset({"Add"}), check=_runtime_operands),
    Step("layernorm", ops=LAYER_NORM_OPS),
), mirrors="ORT SkipLayerNormFusion")

ATTENTION = Rule("Attention", (
    Step("qk", ops=MATMUL_OPS),
    Step("scale/mask", kinds=_POINTWISE, at_most=5),
    Step("softmax", ops=SOFTMAX_OPS),
    Step("probabilities", kinds=_POINTWISE, at_most=3),  # casts, dropouts, views
    Step("av", ops=MATMUL_OPS),
), mirrors="flash attention: QK^T, scale, mask, Softmax and xV in one kernel")


def _read_through_views(ctx: Context, node: str) -> set[str]:
    """The nodes that read `node`'s data, a view's readers standing for the view (a Cast to the same type,
    an Identity, a Reshape read by two kernels)."""
    out, stack = set(), [node]
    while stack:
        for t in ctx.graph.by_name[stack.pop()].outputs:
            for c in ctx.graph.consumers.get(t, ()):
                if ctx.kind(c.name) == SHAPE and c.name not in ctx.static:
                    stack.append(c.name)
                out.add(c.name)
    return out


def _operands_unlike_to_ort(ctx: Context, add) -> str | None:
    """ORT's SkipLayerNormFusion compares the Add's operands dim by dim as its shape inference knows them (an
    unknown dim reads as 0): both of known rank, each dim known on both sides or on neither. Checked with
    sessions (tests/test_ort_fold.py)."""
    a, b = (ort_known_dims(ctx, t) for t in add.inputs[:2])
    if a is None or b is None:
        return "onnxruntime's shape inference does not know an operand's rank"
    if len(a) != len(b) or any(x != y for x, y in zip(a, b, strict=True)):
        return "onnxruntime's shape inference knows a dim of one operand that it does not of the other"
    return None


def family(ops: set[str]) -> str:
    return next((name for name, needs in FAMILIES if all(ops & s for s in needs)), "Norm")


class NormPass(FusionPass):
    name = "norm"
    help = ("decomposed LayerNorm/RMSNorm/Softmax/GELU patterns into one kernel; a residual Add feeding "
            "only a LayerNorm joins it (SkipLayerNorm)")
    rules = (GELU.rule, FAST_GELU.rule, LAYER_NORM.rule, RMS_NORM.rule, DECOMPOSED_NORM, SKIP_LAYER_NORM)
    exact = False  # True: only the GELU patterns ONNX Runtime matches (OrtNormPass)

    def apply(self, ctx: Context, part: Partition) -> None:
        rule = DECOMPOSED_NORM
        norm_groups: set[int] = set()
        consumers = ctx.graph.consumers
        for n in ctx.graph.nodes:
            # a view may start one too: an eliminated Cast or Identity hands its input to the norm
            if n.name in ctx.static or sum(len(consumers.get(t, ())) for t in n.outputs) < 2:
                continue  # at most one reader: no region starts here
            readers = {c.name for t in n.outputs for c in consumers.get(t, ()) if ctx.real(c.name)}
            if len(readers) < 2:
                continue  # not a fan-out: no region starts here
            found = self._region(ctx, n.name, readers)
            if isinstance(found, str):
                if found:
                    self.reject(rule, n.name, found)
                continue
            region, end, ops = found
            gids = {part.group_of[m] for m in region}
            if part.group_of[n.name] in norm_groups:  # the second half of a pattern (LayerNorm's variance)
                gids.add(part.group_of[n.name])
            old = {ctx.op(m) for g in gids for m in part.members[g]} | ops
            label = family(old)
            fam = family_rule(label, old, self.exact)
            if fam is not None and self._refused(ctx, fam, n.name, region, end):
                continue
            which = fam.rule.name if fam else rule.name
            gid = self.merge(part, gids, which, n.name, "body", label=label)
            if gid is None:
                self.reject(fam.rule if fam else rule, n.name, CYCLE)
                continue
            gid = self._tail(ctx, part, gid, n.name, fam)
            norm_groups.add(gid)
        self._skip(ctx, part, norm_groups)

    def _region(self, ctx: Context, start: str, readers: set[str]):
        """(region, end, its ops) of a decomposed norm starting at a fan-out, or why not ('' to say nothing).
        Where the readers meet only after a matrix op (T5's and Llama's exports read the norm's input again
        in the residual Add), the region ending at an inner reader, one the other readers' paths reach too,
        is the candidate: ONNX Runtime's norm fusions match from the input, not from where readers meet."""
        body, signature = DECOMPOSED_NORM.steps[0], DECOMPOSED_NORM.steps[1]
        end = ctx.ipdom.get(start)
        region = ctx.region(start, end) if end else None
        if region and len(region) >= 2:
            ops = {ctx.op(m) for m in region}
            odd = next((m for m in region if not body.matches(ctx, m)), None)
            if ops & signature.ops and odd is None:
                return region, end, ops
        elif not end:
            why = "its readers never meet again (no post-dominator)"
        elif region is None:
            why = f"more than 64 nodes before its readers meet at {end}"
        else:
            return ""
        if region:
            why = (f"no {'/'.join(sorted(signature.ops))} among the ops up to {end}, where its readers meet"
                   if not ops & signature.ops else
                   f"{odd} ({ctx.op(odd)}, {ctx.kind(odd).label}) lies between it and {end}, where its "
                   "readers meet")
        idx = ctx.graph.index
        for r in sorted(readers, key=idx.__getitem__):
            inner = ctx.between(start, r, 16)
            # two nodes only as a pre-norm LayerNorm's mean half (GPT-2: the residual reads x too), which
            # is judged with its variance half (_refused)
            if not inner or (len(inner) < 3 and {ctx.op(m) for m in inner} != _MEAN_HALF):
                continue
            ops = {ctx.op(m) for m in inner}
            if ops & signature.ops and all(body.matches(ctx, m) for m in inner):
                return inner, r, ops
        return why

    def _refused(self, ctx: Context, fam: Family, start: str, region: list[str], end: str) -> bool:
        """Does the family's rule refuse the region (its body)? A LayerNorm's mean half (ending at the Sub
        that centres the input) is judged with the variance half that follows it, so that a refused
        variance half leaves no half-fused LayerNorm behind."""
        nodes = [m for m in region if ctx.real(m)]
        if fam is LAYER_NORM and ctx.op(end) == "Sub":
            nxt = ctx.ipdom.get(end)
            more = ctx.region(end, nxt) if nxt else None
            nodes += [m for m in more or () if ctx.real(m) and m not in nodes]
        refusal = fam.fit(ctx, nodes, start)
        if refusal is None:
            return False
        bad, reason = refusal
        for m in nodes:  # every node of the candidate answers for it in `explain`
            self.reject(fam.rule, bad, reason, anchor=m)
        return True

    def _tail(self, ctx: Context, part: Partition, gid: int, start: str, fam: Family | None) -> int:
        """The ops right after that the family takes (GELU's x0.5, a LayerNorm's gamma and beta); without a
        family, constant-operand elementwise ops."""
        tail = DECOMPOSED_NORM.steps[2]
        label = part.labels.get(gid)
        taken: dict[str, int] = {}
        while True:
            nxt = ctx.sole_consumer(part, gid)
            real = ctx.real_members(part, nxt) if nxt is not None else []
            if len(real) != 1:
                return gid
            c = real[0]
            if fam is None:
                if not tail.matches(ctx, c) or tail.refuses(ctx, start, c):
                    return gid
                which, step_name = DECOMPOSED_NORM.name, "tail"
            else:
                step, why = fam.tail_step(ctx, start, c, taken)
                if step is None:
                    if why:
                        self.reject(fam.rule, c, why, anchor=start)
                    return gid
                taken[step.name] = taken.get(step.name, 0) + 1
                which, step_name = fam.rule.name, step.name
            merged = self.merge(part, {gid, nxt}, which, start, step_name, label=label)
            if merged is None:
                return gid
            gid = merged

    def _skip(self, ctx: Context, part: Partition, norm_groups: set[int]) -> None:
        rule = SKIP_LAYER_NORM
        residual, layernorm = rule.steps
        if not norm_groups and not ctx.matching(layernorm):
            return  # no norm here to take a residual
        for n in ctx.graph.nodes:
            is_ln = layernorm.matches(ctx, n.name)
            gid = part.group_of[n.name]
            if not is_ln and not (gid in norm_groups and part.labels.get(gid) in ("LayerNorm", "RMSNorm")):
                continue
            if (is_ln and len(ctx.real_members(part, gid)) > 1) or not n.inputs:
                continue
            prod = ctx.graph.producer.get(n.inputs[0])
            if prod is None or not residual.matches(ctx, prod.name):
                continue
            pg = part.group_of[prod.name]
            if pg == gid:
                continue  # the norm's own Add (its epsilon), or a residual it took already
            if reason := residual.refuses(ctx, n.name, prod.name):
                self.reject(rule, prod.name, reason, anchor=n.name)
            elif self.exact and (why := _operands_unlike_to_ort(ctx, prod)):
                self.reject(rule, prod.name, why, anchor=n.name)
            elif len(ctx.real_members(part, pg)) != 1:
                self.reject(rule, prod.name, f"already fused into {group_name(part, pg)}", anchor=n.name)
            elif _read_through_views(ctx, prod.name) - set(part.members[gid]):
                self.reject(rule, prod.name, "its result is read again outside the norm (through a view)",
                            anchor=n.name)
            elif (sole := ctx.sole_consumer(part, pg)) != gid:
                self.reject(rule, prod.name, ctx.no_sole_consumer(part, pg) if sole is None
                            else f"its result reaches {n.name} through another subgraph", anchor=n.name)
            elif self.merge(part, {pg, gid}, rule.name, n.name, "residual",
                            label="SkipLayerNorm" if is_ln else part.labels.get(gid)) is None:
                self.reject(rule, prod.name, CYCLE, anchor=n.name)


class OrtNormPass(NormPass):
    name = "ort_norm"
    help = ("the norm pass with ONNX Runtime's own GELU patterns: GeluFusion takes x / sqrt(2) and the 0.5 "
            "on x or on the product only (not the torch dynamo exporter's 0.5 * (1 + erf) first)")
    rules = (GELU_ORT.rule, FAST_GELU.rule, LAYER_NORM.rule, RMS_NORM_ORT.rule, *NormPass.rules[4:])
    exact = True


class AttentionPass(FusionPass):
    name = "attention"
    help = ("QK^T, scale, mask, Softmax and xV into one kernel whose score matrix never reaches DRAM "
            "(the flash-attention what-if)")
    rules = (ATTENTION,)

    def apply(self, ctx: Context, part: Partition) -> None:
        rule = ATTENTION
        qk_step, before, softmax, after, av_step = rule.steps
        for n in ctx.matching(softmax):
            qk, back, why = self._walk(ctx, n.name, before, qk_step, forward=False)
            av, ahead, why_not = self._walk(ctx, n.name, after, av_step, forward=True)
            if qk is None or av is None:
                self.reject(rule, n.name, why or why_not)
                continue
            gids = {part.group_of[m] for m in (n.name, *back, *ahead, qk, av)}
            gid = self.merge(part, gids, rule.name, n.name, "softmax", label="Attention")
            if gid is None:
                self.reject(rule, n.name, CYCLE)
            else:
                part.tiled.add(gid)

    @staticmethod
    def _walk(ctx: Context, start: str, between: Step, end: Step, forward: bool):
        """From the Softmax to the matmul at one end: (that matmul or None, the nodes passed, why not)."""
        graph = ctx.graph
        cur, passed = start, []
        where = "after" if forward else "before"
        for _ in range(between.at_most + 1):
            if forward:
                outs = graph.by_name[cur].outputs
                readers = [c.name for t in outs if t for c in graph.consumers.get(t, ())]
                if len(readers) != 1:
                    return None, passed, f"{cur}'s result has {len(readers)} readers, not one xV MatMul"
                nxt = readers[0]
            else:
                ins = graph.by_name[cur].inputs
                prod = graph.producer.get(ins[0]) if ins else None
                if prod is None:
                    return None, passed, f"{cur}'s input comes from outside the graph, not a QK^T MatMul"
                nxt = prod.name
            if end.matches(ctx, nxt):
                return nxt, passed, None
            if not between.matches(ctx, nxt):
                return None, passed, (f"{nxt} ({ctx.op(nxt)}, {ctx.kind(nxt).label}) stands {where} it, "
                                      f"where only {between.name} ops may")
            passed.append(nxt)
            cur = nxt
        return None, passed, f"no MatMul within {between.at_most} {between.name} ops {where} it"
