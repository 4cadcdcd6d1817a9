"""Control flow: the cost of a nested graph times the number of times it runs.

A Loop with a constant trip count is costed that many times; a Scan runs once per slice of its scan
inputs; an If whose condition is a constant runs that branch, otherwise both branches are costed, the
larger is counted, and the node says so.
"""

from __future__ import annotations

from .registry import Cost, MalformedNode, OpContext, OpKind, Work, cost

# A trip count this large is a "loop until cond" sentinel (exporters write INT32_MAX or INT64_MAX), not a
# count: no real model runs a body two billion times.
_MAX_STATIC_TRIPS = (1 << 31) - 1


def _required(ctx: OpContext, name: str):
    costs = ctx.cost_subgraph(name)
    if costs is None:
        raise MalformedNode(f"required graph {name!r} is absent")
    return costs


def _work(total: Cost, children, notes) -> Work:
    # The bodies' matrix work keeps its geometry: each execution is another GEMM of the same shape.
    gemms = tuple(g.repeated(times) for _label, child, times in children if times > 0
                  for nc in child.nodes for g in nc.gemms)
    return Work(macs=total.macs, flops=total.flops, kind=OpKind.OPAQUE, nested=total, notes=tuple(notes),
                children=tuple(children), gemms=gemms)


@cost("Loop")
def _loop(ctx: OpContext) -> Work:
    body = _required(ctx, "body")
    m = ctx.const_int(0)
    cond = ctx.const_value(1)
    if cond is not None and cond.size == 1 and not bool(cond.reshape(-1)[0]):
        return _work(Cost(), [("body", body, 0)], ["cond is false on entry: the body never runs"])
    if m is not None and 0 <= m < _MAX_STATIC_TRIPS:
        trips = m
        note = f"body costed {trips} times (trip count M)"
        if ctx.has(1) and not _cond_stays_true(ctx, cond):
            note += "; an upper bound, the loop may exit early on cond"
        return _work(body.total.scaled(trips), [("body", body, trips)], [note])
    return _work(body.total, [("body", body, 1)],
                 ["trip count not static: body costed once; pass a constant M to cost it exactly"])


def _cond_stays_true(ctx: OpContext, cond) -> bool:
    """True when cond starts true and the body hands it on unchanged (or sets it to a constant true)."""
    if cond is None or cond.size != 1 or not bool(cond.reshape(-1)[0]):
        return False
    body = ctx.node.subgraphs().get("body")
    if body is None or len(body.input) < 2 or not body.output:
        return False
    out = body.output[0].name
    if out == body.input[1].name:
        return True
    for n in body.node:
        if out in n.output:
            return n.op_type == "Identity" and list(n.input) == [body.input[1].name]
    return False


@cost("Scan")
def _scan(ctx: OpContext) -> Work:
    body = _required(ctx, "body")
    n_scan = ctx.int_attr("num_scan_inputs", lo=1)
    if n_scan > ctx.n_inputs:
        raise MalformedNode(f"num_scan_inputs is {n_scan}, more than its {ctx.n_inputs} inputs")
    first = ctx.n_inputs - n_scan
    axes = ctx.ints_attr("scan_input_axes", [0] * n_scan)
    shape = ctx.shape(first, min_rank=1)  # each iteration takes one slice of it
    trips = shape[int(axes[0]) % len(shape)]
    return _work(body.total.scaled(trips), [("body", body, trips)], [f"body costed {trips} times"])


@cost("If")
def _if(ctx: OpContext) -> Work:
    then_c, else_c = _required(ctx, "then_branch"), _required(ctx, "else_branch")
    cond = ctx.const_value(0)
    if cond is not None and cond.size == 1:
        taken = bool(cond.reshape(-1)[0])
        chosen = then_c if taken else else_c
        children = [("then_branch", then_c, int(taken)), ("else_branch", else_c, int(not taken))]
        branch = "then" if taken else "else"
        return _work(chosen.total, children, [f"condition is constant {taken}: only the {branch} branch runs"
                                              ])

    def key(c):
        return (c.total.flops, c.total.dram_bytes)

    larger, name = (then_c, "then") if key(then_c) >= key(else_c) else (else_c, "else")
    note = (f"condition not static: both branches costed (then {then_c.total.flops:,} FLOPs, "
            f"else {else_c.total.flops:,} FLOPs), the larger ({name}) counted")
    return _work(larger.total, [("then_branch", then_c, int(name == "then")),
                                ("else_branch", else_c, int(name == "else"))], [note])
