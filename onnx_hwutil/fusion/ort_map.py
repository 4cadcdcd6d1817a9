"""onnxruntime's optimized graph mapped back onto ours, by tensor names, as a partition.

- A kernel whose output keeps one of our tensor names ends with the node of ours that wrote it (its anchor);
  the nodes of ours between the anchor and the tensors the kernel reads are those it fused.
- Layout nodes onnxruntime adds (NCHWc ReorderInput/ReorderOutput, the Reshapes around a MatMul turned
  Gemm, the Transposes around an NHWC kernel) only rename a value: each name on either side of one stands
  for the same value of ours (`_Names`).
- A kernel whose output onnxruntime renamed (the NCHWc transformer's reorder tokens) is found by its node
  name, which onnxruntime takes from our node or tensor, else as the one node of its op type that reads
  what it reads. Where onnxruntime grows such a kernel past that node (NCHWc convolutions, quantized
  kernels: ort_ops.grows), the elementwise nodes it absorbed (a residual Add, an activation, the closing
  QuantizeLinear) are the ones that read only what the kernel reads or writes itself.
- Our Transposes, which onnxruntime moves through elementwise ops and reductions, hand a value on in
  another layout, as its layout nodes do; identical nodes of ours of which it kept one (common
  subexpression elimination) stand for one value.
- Nodes whose outputs became initializers, or that compute from constants alone, were folded at load time:
  static, as the shape pass marks them. They, views, and nodes onnxruntime removed (an Identity, a Dropout,
  a cancelled pair of Transposes, a duplicate) join the first kernel that reads them, as the shape pass
  joins views.

A kernel with no node of ours behind it (a Cast onnxruntime inserts, one node it runs as two) cannot be a
subgraph of ours, nor can a kernel whose nodes would feed each other through another: both are an
OrtMappingError naming the kernel, never a partition that silently differs from onnxruntime's.
"""

from __future__ import annotations

import onnx

from ..errors import HwUtilError
from ..graph import VIEW_OPS
from ..profile import Profile
from .context import BROADCAST, SHAPE, Context
from .kinds import join_consumers, load_time
from .ort_ops import NCHWC_SUFFIXES, RANDOM, TOKEN, WIRES, grows, is_kernel, label
from .partition import Partition


class OrtMappingError(HwUtilError):
    """onnxruntime's graph has a kernel our graph cannot hold as one subgraph: the `ort` preset refuses."""


class _Names:
    """Tensor names that stand for one value (union-find): ours, and onnxruntime's renamings of them."""

    def __init__(self, ours: set[str]):
        self.parent: dict[str, str] = {}
        self.ours = ours
        self.has_ours: set[str] = set()  # roots of the values some name of ours stands for

    def find(self, t: str) -> str:
        root = t
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while t != root:  # path halving keeps chains of renamings short
            self.parent[t], t = root, self.parent[t]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb
            if ra in self.has_ours or a in self.ours:
                self.has_ours.add(rb)
        if b in self.ours:
            self.has_ours.add(rb)

    def resolved(self, t: str) -> bool:
        """Does the value carry a name of ours?"""
        return t in self.ours or self.find(t) in self.has_ours


class _Mapper:
    def __init__(self, profile: Profile, ort_graph: onnx.GraphProto):
        self.graph = profile.graph
        self.ctx = Context(profile.graph, profile.costs.nodes)
        self.nodes = list(ort_graph.node)  # onnxruntime writes them in a topological order
        self.producer = {o: i for i, n in enumerate(self.nodes) for o in n.output if o}
        self.inits = {t.name for t in ort_graph.initializer}
        g = self.graph
        ours = set(g.tensors) | set(g.inputs) | set(g.producer)
        self.names = _Names(ours)
        for n in self.nodes:
            if n.op_type in WIRES and n.input and n.input[0] and n.output and n.output[0]:
                self.names.union(n.output[0], n.input[0])
        # onnxruntime's transpose optimizer moves our Transposes through elementwise ops and reductions: a
        # value and its transpose are one value, in two layouts, on our side too
        for n in g.nodes:
            if n.op_type == "Transpose" and n.domain == "" and n.inputs and n.outputs[:1] != ("",):
                self.names.union(n.outputs[0], n.inputs[0])
        self.anchor: dict[str, int] = {}  # our node -> the ORT node it ends
        self.folded: set[str] = set()  # ours whose outputs onnxruntime turned into initializers
        self.owner: dict[str, int] = {}  # our node -> the ORT kernel whose subgraph it is in
        self.static: set[str] = set()  # load-time nodes: ours whose work onnxruntime does once, at load

    def merge_duplicates(self) -> None:
        """onnxruntime's common subexpression elimination keeps one of identical nodes: unless it kept
        several (each then its own kernel), their outputs are one value."""
        changed = True
        while changed:  # a duplicate of a duplicate matches once its inputs do
            changed = False
            kept: dict[tuple, object] = {}
            for n in self.graph.nodes:
                if n.subgraphs() or n.op_type in RANDOM:
                    continue
                key = (n.domain, n.op_type, tuple(self.names.find(t) if t else "" for t in n.inputs),
                       tuple(a.SerializeToString() for a in n.proto.attribute))
                first = kept.setdefault(key, n)
                for a, b in zip(first.outputs, n.outputs, strict=False) if first is not n else ():
                    if a and b and not (self._present(a) and self._present(b)) and \
                            self.names.find(a) != self.names.find(b):
                        self.names.union(a, b)
                        changed = True

    def _present(self, t: str) -> bool:
        return t in self.producer or t in self.inits

    # -- anchors -------------------------------------------------------------------------------------------
    def _writer(self, tensor: str) -> int | None:
        """The ORT node that computes `tensor`, through the layout nodes after it; None: an input or an
        initializer."""
        i = self.producer.get(tensor)
        while i is not None and self.nodes[i].op_type in WIRES:
            i = self.producer.get(self.nodes[i].input[0]) if self.nodes[i].input else None
        return i

    def find_anchors(self) -> None:
        for n in self.graph.nodes:
            if self.ctx.kind(n.name) == SHAPE:
                continue  # views and shape math: they join a kernel later, wherever onnxruntime put them
            present = [o for o in self._buffer(n) if self._present(o)]
            if present and all(o in self.inits for o in present):
                self.folded.add(n.name)
                continue
            for o in present:
                i = self.producer.get(o)
                twin = self.nodes[i].op_type == n.op_type  # a Transpose onnxruntime kept as it is
                i = i if twin else self._writer(o)
                if i is not None:
                    self.anchor.setdefault(n.name, i)
                    break

    def _buffer(self, node) -> list[str]:
        """A node's outputs and the views of them (onnxruntime may keep the name of the last view of a
        chain it removed)."""
        out = [o for o in node.outputs if o]
        for t in out:  # grows as views are found
            out += [o for c in self.graph.consumers.get(t, ()) if c.op_type in VIEW_OPS and c.domain == ""
                    and c.inputs[0] == t for o in c.outputs[:1] if o]
        return out

    def _by_name(self) -> dict[str, str]:
        """Our nodes by the name the file gives them (names given twice left out)."""
        out: dict[str, str] = {}
        twice = set()
        for n in self.graph.nodes:
            name = n.proto.name
            if name in out:
                twice.add(name)
            elif name:
                out[name] = n.name
        return {k: v for k, v in out.items() if k not in twice}

    def hint_anchors(self) -> None:
        """Kernels whose output onnxruntime renamed: our node by the kernel's name (ours, ours plus a
        fusion's suffix, or NCHWc's `<our tensor>_nchwc`)."""
        by_name = self._by_name()
        taken = set(self.anchor.values())
        for i, k in enumerate(self.nodes):
            if not is_kernel(k) or (i in taken and all(self.names.resolved(o) for o in k.output if o)):
                continue
            node = self._named(k.name, by_name)
            if node is not None and self._free(node):
                self.anchor[node] = i

    def _named(self, name: str, by_name: dict[str, str]) -> str | None:
        name = TOKEN.sub("", name)
        if name in by_name:
            return by_name[name]
        for suffix in NCHWC_SUFFIXES:
            prod = self.graph.producer.get(name[: -len(suffix)]) if name.endswith(suffix) else None
            if prod is not None:
                return prod.name
        cut = name.rfind("/")
        while cut > 0:  # `<our node>/<FusionName>...`, the longest of our names first
            if name[:cut] in by_name:
                return by_name[name[:cut]]
            cut = name.rfind("/", 0, cut)
        return None

    def _free(self, node: str) -> bool:
        return (node not in self.anchor and node not in self.owner and node not in self.static
                and self.ctx.kind(node) != SHAPE)

    # -- kernels -------------------------------------------------------------------------------------------
    def assign(self) -> list[int]:
        """Each kernel's subgraph, in onnxruntime's order; the kernels left with no node of ours."""
        seeds: dict[int, list[str]] = {}
        for node, i in self.anchor.items():
            seeds.setdefault(i, []).append(node)
        empty = []
        for i, k in enumerate(self.nodes):
            if not is_kernel(k) and not (k.op_type == "Transpose" and i in seeds):
                continue
            reads = {self.names.find(t) for t in k.input if t}
            region = set(seeds.get(i, ())) or self._same_op(k, reads) or self._from_reads(reads)
            region |= self._upstream(region, reads)
            if any(not self.names.resolved(o) for o in k.output if o):
                if grows(k):
                    region |= self._epilogue(region, reads)
                self._rename(k, region)
            for m in region:
                self.owner[m] = i
            if not region:
                empty.append(i)
        return empty

    def _constant(self, t: str) -> bool:
        prod = self.graph.producer.get(t)
        return self.graph.tensor(t).const if prod is None else prod.name in self.static

    def _same_op(self, k: onnx.NodeProto, reads: set[str]) -> set[str]:
        """A kernel with no name of ours: the one free node of its op type that reads only what it reads
        (the first of identical ones: the others are what common subexpression elimination dropped)."""
        found: dict[str, str] = {}
        for n in self.graph.nodes:
            if n.op_type == k.op_type and self._free(n.name) and n.outputs and \
                    all(not t or self.names.find(t) in reads or self._constant(t) for t in n.inputs):
                found.setdefault(self.names.find(n.outputs[0]), n.name)
        return set(found.values()) if len(found) == 1 else set()

    def _upstream(self, region: set[str], reads: set[str]) -> set[str]:
        """Our nodes between the region and the values the kernel reads: what it fused before its anchor."""
        dag = self.graph.dag
        out: set[str] = set()
        stack = list(region)
        while stack:
            m = stack.pop()
            for p, edge in dag.pred[m].items():
                if p in region or p in out or p in self.static or p in self.owner or p in self.anchor:
                    continue
                if all(self.names.find(t) in reads for t in edge["tensors"]):
                    continue  # the kernel reads that value: its writer is another kernel
                out.add(p)
                stack.append(p)
        return out

    def _epilogue(self, region: set[str], reads: set[str]) -> set[str]:
        """After a kernel whose output was renamed: the chain of elementwise nodes it absorbed, each the only
        reader of what the region writes, reading nothing else the kernel does not read."""
        inside = set(region)
        grown = True
        while grown:
            grown = False
            for m in sorted(inside, key=self.graph.index.__getitem__):
                for t in self.graph.by_name[m].outputs:
                    c = self._sole_reader(t)
                    if c is not None and self._absorbable(c, inside, reads):
                        inside.add(c)
                        grown = True
        return inside - region

    def _from_reads(self, reads: set[str]) -> set[str]:
        """A kernel with no name of ours and no node of its op type (a Gelu onnxruntime fused from five of
        ours): the elementwise nodes computed from what it reads alone."""
        inside: set[str] = set()
        for n in self.graph.nodes:  # in execution order: a node's producers are seen first
            fed = any(t and (self.names.find(t) in reads or self._writer_in(t, inside)) for t in n.inputs)
            if fed and self._absorbable(n.name, inside, reads):
                inside.add(n.name)
        return inside

    def _absorbable(self, node: str, inside: set[str], reads: set[str]) -> bool:
        # A matrix op or a reduction is a kernel of its own, never an epilogue; a DequantizeLinear begins
        # onnxruntime's next QDQ node unit, never ends the one before.
        if node in inside or not self._free(node) or self.ctx.kind(node) > BROADCAST \
                or self.graph.by_name[node].op_type == "DequantizeLinear":
            return False
        return all(self._available(x, inside, reads) for x in self.graph.by_name[node].inputs)

    def _writer_in(self, t: str, inside: set[str]) -> bool:
        prod = self.graph.producer.get(t)
        return prod is not None and prod.name in inside

    def _available(self, t: str, inside: set[str], reads: set[str]) -> bool:
        """Can a node of the kernel read `t`: written inside it, read by it, or a constant?"""
        return not t or self.names.find(t) in reads or self._constant(t) or self._writer_in(t, inside)

    def _sole_reader(self, t: str) -> str | None:
        if not t or t in self.ctx.outputs:
            return None
        readers = {c.name for c in self.graph.consumers.get(t, ())}
        return next(iter(readers)) if len(readers) == 1 else None

    def _rename(self, k: onnx.NodeProto, region: set[str]) -> None:
        """The renamed output of a kernel with one is the one value its subgraph hands on."""
        renamed = [o for o in k.output if o and not self.names.resolved(o)]
        escaping = [t for m in region for t in self.graph.by_name[m].outputs
                    if t and (t in self.ctx.outputs or any(c.name not in region
                                                           for c in self.graph.consumers.get(t, ())))]
        if len(renamed) == 1 and len(escaping) == 1:
            self.names.union(renamed[0], escaping[0])

    # -- the partition -------------------------------------------------------------------------------------
    def partition(self) -> Partition:
        self.merge_duplicates()
        self.find_anchors()
        self.hint_anchors()
        # what onnxruntime runs is not load-time work, whatever our rule says (a DequantizeLinear it keeps)
        self.static = (load_time(self.ctx) - set(self.anchor)) | self.folded
        empty = self.assign()
        if empty:
            shown = "; ".join(self._where(i) for i in empty[:3])
            raise OrtMappingError(f"onnxruntime runs {len(empty)} kernel(s) with no node of the model behind "
                                  f"them ({shown}{'; ...' * (len(empty) > 3)}): the ort fusion preset cannot "
                                  "map them; use the runtime preset")
        part = Partition.singletons(self.graph)
        part.static |= self.static
        part.folded |= self._folded_batchnorms()
        # Views, load-time nodes and nodes onnxruntime removed join the first node that reads them, before
        # the kernels form, as the shape pass has them join before any other pass: a shape computation read
        # inside a kernel then never closes a cycle around it.
        movable = {n.name for n in self.graph.nodes if n.name not in self.owner}
        join_consumers(self.ctx, part, movable, lambda gids, _node: part.merge(gids))
        members: dict[int, list[str]] = {}
        for m, i in self.owner.items():
            members.setdefault(i, []).append(m)
        for i, ms in members.items():
            if part.merge({part.group_of[m] for m in ms}, label(self.nodes[i])) is None:
                raise OrtMappingError(f"onnxruntime's {label(self.nodes[i])} {self.nodes[i].name!r} covers "
                                      f"nodes {', '.join(sorted(ms)[:3])} that another kernel sits between: "
                                      "the ort fusion preset cannot map it; use the runtime preset")
        return part

    def _where(self, i: int) -> str:
        """Kernel i as an error names it: its op, its name, and the node of ours that reads its output (else
        the one it reads), where it sits (one node of ours run as two kernels shows beside that node)."""
        k = self.nodes[i]
        feeds = [m for m, j in self.owner.items() if set(self.nodes[j].input) & set(k.output)]
        fed = [m for m, j in self.owner.items() if set(self.nodes[j].output) & set(k.input)]
        near = feeds or fed
        where = f" beside {min(near, key=self.graph.index.__getitem__)}" if near else ""
        return f"{label(k)} {k.name!r}{where}"

    def _folded_batchnorms(self) -> set[str]:
        """BatchNormalizations in the subgraph of the kernel that reads their conv's output: onnxruntime
        folded them into its weights (ConvBNFusion), as the conv_bn pass marks them."""
        out = set()
        for m, i in self.owner.items():
            n = self.graph.by_name[m]
            prod = self.graph.producer.get(n.inputs[0]) if n.inputs else None
            if n.op_type == "BatchNormalization" and self.nodes[i].op_type != "BatchNormalization" \
                    and prod is not None and self.owner.get(prod.name) == i:
                out.add(m)
        return out


def ort_partition(profile: Profile, ort_graph: onnx.GraphProto) -> Partition:
    """onnxruntime's kernels as groups of our nodes, labelled with onnxruntime's op types."""
    return _Mapper(profile, ort_graph).partition()


def ort_owners(profile: Profile, ort_graph: onnx.GraphProto) -> dict[str, list[str]]:
    """onnxruntime's node name -> the nodes of ours its kernel covers, without building a partition (a
    kernel that covers none, or would close a cycle, is simply absent): how `validate` reads a profile whose
    node names onnxruntime made up (NCHWc convolutions, quantized kernels)."""
    m = _Mapper(profile, ort_graph)
    m.merge_duplicates()
    m.find_anchors()
    m.hint_anchors()
    m.static = (load_time(m.ctx) - set(m.anchor)) | m.folded
    m.assign()
    out: dict[str, list[str]] = {}
    for node, i in m.owner.items():
        out.setdefault(m.nodes[i].name, []).append(node)
    return out
