"""`llm`: the KV cache read from the graph, phases bound from it, and numbers checked by hand and by physics
on the bundled Llama-3.2-1B-shaped decoders (16 layers, 8 KV heads of 64, hidden 2048)."""

import json
import math

import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from onnx_hwutil.cli import app
from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.hardware import load_spec
from onnx_hwutil.llm.detect import find_decoder
from onnx_hwutil.llm.phases import DecoderModel, Phase, kernel_peak_bytes
from onnx_hwutil.llm.study import ROW_KEYS, Query, study, tp_latency
from onnx_hwutil.loader import load_model

PLAIN, INT4 = "models/llama_1b_kv.onnx", "models/llama_1b_int4.onnx"
LAYERS, KV_HEADS, HEAD = 16, 8, 64
KV_PER_TOKEN_BF16 = 2 * LAYERS * KV_HEADS * HEAD * 2  # K and V, every layer, 2 bytes: 32 KiB a token
runner = CliRunner()


@pytest.fixture(scope="module")
def plain():
    return DecoderModel(PLAIN, find_decoder(load_model(PLAIN)))


@pytest.fixture(scope="module")
def h100():
    return load_spec("h100-sxm5")


def test_a_plain_export_is_found_by_its_concat():
    d = find_decoder(load_model(PLAIN))
    assert (d.layers, len(d.caches), d.how) == (16, 32, "Concat")
    assert (d.past_dim, d.new_dims, d.total_dims, d.batch_dim) == (
        "past_sequence_length", ("sequence_length",), ("total_sequence_length",), "batch_size")
    assert d.caches[0].past == "past_key_values.0.key" and d.caches[0].present == "present.0.key"
    assert d.caches[0].seq_axis == 2


def test_a_genai_export_is_found_by_its_attention_op():
    d = find_decoder(load_model(INT4))
    assert (d.layers, d.how) == (16, "GroupQueryAttention (com.microsoft)")
    names = {f"past_key_values.{i}.{kv}" for i in range(16) for kv in ("key", "value")}
    assert {c.past for c in d.caches} == names


def test_a_model_without_a_cache_is_refused_in_one_line():
    with pytest.raises(HwUtilError, match="not a decoder with a KV cache"):
        find_decoder(load_model("models/resnet18.onnx"))
    r = runner.invoke(app, ["llm", "models/bert_base.onnx"])
    assert r.exit_code == 2 and "not a decoder with a KV cache" in r.output


def test_names_do_not_matter_dataflow_does():
    """A cache named like nothing an exporter writes is still found; a concat whose result is not returned
    as it is (here through a Relu) is not a cache."""
    x = helper.make_tensor_value_info("tok", TensorProto.FLOAT, ["b", "n", 4])
    past = helper.make_tensor_value_info("memory_in", TensorProto.FLOAT, ["b", "p", 4])
    out = helper.make_tensor_value_info("memory_out", TensorProto.FLOAT, ["b", "t", 4])
    m = helper.make_model(helper.make_graph([helper.make_node("Concat", ["memory_in", "tok"], ["memory_out"],
                                                              axis=1)], "g", [x, past], [out]))
    d = find_decoder(m)
    assert (d.past_dim, d.new_dims, d.caches[0].seq_axis) == ("p", ("n",), 1)
    m.graph.node[0].output[0] = "joined"
    m.graph.node.append(helper.make_node("Relu", ["joined"], ["memory_out"]))
    with pytest.raises(HwUtilError, match="not a decoder"):
        find_decoder(m)


def test_cache_bytes_are_the_formula_of_design_md(plain, h100):
    # DESIGN.md: 2 x layers x kv_heads x head_dim x context x element size, per sequence
    dec = plain.run(Phase("decode", 2, 1024), h100, "bf16", "model", "model", "aggressive")
    assert dec.kv_read_bytes == 2 * 1024 * KV_PER_TOKEN_BF16
    assert dec.kv_cache_bytes == 2 * 1025 * KV_PER_TOKEN_BF16
    pre = plain.run(Phase("prefill", 2, 512), h100, "bf16", "model", "model", "aggressive")
    assert (pre.kv_read_bytes, pre.kv_cache_bytes) == (0, 2 * 512 * KV_PER_TOKEN_BF16)
    int8 = plain.run(Phase("decode", 2, 1024), h100, "bf16", "model", "int8", "aggressive")
    assert int8.kv_read_bytes == math.ceil(2 * 1024 * KV_PER_TOKEN_BF16 / 16 * (8 + 16 / HEAD))


def test_int4_weights_price_matrix_weights_at_4_5_bits(plain, h100):
    g = load_model(PLAIN).graph
    inits = {t.name: math.prod(t.dims) for t in g.initializer}
    matmul_w = {n.input[1] for n in g.node if n.op_type == "MatMul" and n.input[1] in inits}
    base = plain.run(Phase("decode", 1, 256), h100, "bf16", "model", "model", "aggressive")
    q = plain.run(Phase("decode", 1, 256), h100, "bf16", "int4", "model", "aggressive")
    matmul = sum(inits[w] for w in matmul_w)
    assert matmul > 1.2e9  # every projection and the LM head
    assert base.weight_bytes - q.weight_bytes == pytest.approx(matmul * (2 - 4.5 / 8), rel=1e-6)
    # decode is memory-bound on the weights: int4 makes the step faster, by less than the byte ratio
    assert base.schedule.latency_s / 3.6 < q.schedule.latency_s < base.schedule.latency_s


def test_decode_never_beats_the_bandwidth_bound(plain, h100):
    d = study(PLAIN, Query(("h100-sxm5", "a100-sxm4"), (1, 16), (512, 4096)))
    dec = [r for r in d["rows"] if r["phase"] == "decode"]
    assert len(dec) == 8
    # the weights a step reads: every matrix weight once; the tied embedding is the LM head's weight, so the
    # lookup's few rows add nothing; the rotary tables are read a row per token
    run = plain.run(Phase("decode", 1, 512), h100, "bf16", "model", "model", "aggressive")
    assert 1_235_746_816 * 2 <= run.weight_read_bytes < 1_235_746_816 * 2 * 1.001
    assert run.weight_read_bytes < run.weight_bytes  # the rotary tables (16.8 M elements) are not streamed
    for r in dec:
        spec = load_spec(r["hardware"])
        floor = (run.weight_read_bytes + r["kv_cache_bytes"] * r["context"] / (r["context"] + 1)) / \
            spec.dram_bandwidth
        assert r["bandwidth_bound_tokens_per_s"] == pytest.approx(r["batch"] / floor, rel=1e-3)
        assert 0.05 < r["of_bound"] <= 1
        assert r["tokens_per_s"] == pytest.approx(r["batch"] / r["latency_s"])
    # more context, more cache to read: a slower step at the same batch
    by = {(r["hardware"], r["batch"], r["context"]): r["latency_s"] for r in dec}
    assert by[("h100-sxm5", 16, 4096)] > by[("h100-sxm5", 16, 512)]
    assert {r["phase"] for r in d["rows"]} == {"prefill", "decode"}
    pre = [r for r in d["rows"] if r["phase"] == "prefill"]
    assert all(r["bound"] == "compute" for r in pre if r["batch"] == 16)
    assert all(r["tokens_per_s"] == pytest.approx(r["batch"] * r["context"] / r["latency_s"]) for r in pre)


def test_fit_and_max_batch_follow_memory(plain, h100):
    r = study(PLAIN, Query(("h100-sxm5",), (1,), (8192,)))["rows"][1]
    run = plain.run(Phase("decode", 1, 8192), h100, "bf16", "model", "model", "aggressive")
    per_seq = run.kv_cache_bytes + run.activation_bytes
    assert r["max_batch"] == (h100.dram_capacity - run.weight_bytes) // per_seq
    assert r["fits"] is True
    big = study(PLAIN, Query(("h100-sxm5",), (r["max_batch"] + 1,), (8192,)))["rows"][1]
    assert big["fits"] is False


def test_fused_attention_holds_no_score_matrix(plain, h100):
    run = plain.run(Phase("prefill", 1, 2048), h100, "bf16", "model", "model", "aggressive")
    scores = 32 * 2048 * 2048 * 2  # one layer's [heads, seq, seq] in bf16
    logits = 2048 * 128256 * 2  # every position's logits: the graph computes them all, and returns them
    assert logits < run.activation_bytes < logits + scores / 4
    unfused = plain.run(Phase("prefill", 1, 2048), h100, "bf16", "model", "model", "none")

    def biggest_written(f):
        return max(b for sub in f.subgraphs for name, b in sub.writes if name != "logits")

    assert biggest_written(run.fused) < scores <= biggest_written(unfused.fused)
    assert kernel_peak_bytes(unfused.fused, set()) > kernel_peak_bytes(run.fused, set())


def test_tensor_parallel_splits_matrix_kernels_and_pays_for_all_reduces(plain, h100):
    run = plain.run(Phase("decode", 8, 1024), h100, "bf16", "model", "model", "aggressive")
    one, two = tp_latency(run, 1), tp_latency(run, 2)
    split = sum(k.latency_s - k.overhead_s for k in run.schedule.kernels if k.id in run.split_kernels)
    link = h100.interconnect
    msg = 8 * 1 * 2048 * 2  # batch x new tokens x hidden x bf16
    ring = 2 * (1 / 2) * msg / link["bandwidth_bytes_per_s"] + 2 * link["latency_s"]
    assert two == pytest.approx(one - split / 2 + 2 * 16 * ring, rel=1e-9)
    r = runner.invoke(app, ["llm", PLAIN, "--hw", "h100-sxm5", "--devices", "4", "-f", "json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)["tensor_parallel"][0]
    assert [p["devices"] for p in s["points"]] == [1, 2, 4] and s["interconnect"] == "NVLink 4"
    r = runner.invoke(app, ["llm", PLAIN, "--hw", "kpu-t256", "--devices", "2"])
    assert r.exit_code == 2 and "no interconnect" in r.output


def test_cli_rows_carry_exactly_the_documented_names():
    r = runner.invoke(app, ["llm", PLAIN, "--hw", "h100-sxm5", "--context", "256", "--prompt", "128",
                            "--generate", "32", "--weights", "int4", "-f", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert [tuple(row) for row in d["rows"]] == [ROW_KEYS, ROW_KEYS]
    assert all(row["speedup_vs_model"] > 1 for row in d["rows"] if row["phase"] == "decode")
    [s] = d["summary"]
    assert s["e2e_s"] == pytest.approx(s["ttft_s"] + 31 * s["tpot_s"])
    csv = runner.invoke(app, ["llm", PLAIN, "--hw", "h100-sxm5", "--context", "256", "-f", "csv"])
    assert csv.output.splitlines()[0] == ",".join(ROW_KEYS)
    bad = runner.invoke(app, ["llm", PLAIN, "--weights", "int3"])
    assert bad.exit_code == 2 and "--weights 'int3'" in bad.output


def test_both_exports_count_the_same_decode_step():
    """The Optimum-style and the onnxruntime-genai-style files are one model: a decode step after 1024
    tokens is every weight once (K x N of each projection and the LM head) plus attention over 1025 keys."""
    weights = 1_235_746_816  # tests/test_llama_models.py: the MatMul weights of the 1B config
    attention = LAYERS * 2 * 32 * 1025 * HEAD  # Q K^T and P V, 32 query heads, one new token
    for path in (PLAIN, INT4):
        m = DecoderModel(path, find_decoder(load_model(path)))
        assert m.profile(1, 1024, 1, "model", "model", "model").totals.macs == weights + attention, path


def test_report_of_a_decoder_is_a_decode_step_with_an_llm_section(tmp_path):
    r = runner.invoke(app, ["report", PLAIN, "--hw", "h100-sxm5", "--sweep-batch", "1,2", "-o", tmp_path])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "report.md").read_text()
    assert "## LLM phases: prefill and decode" in md
    d = json.loads((tmp_path / "report.json").read_text())
    [llm] = d["llm"]
    assert [(x["phase"], x["batch"], x["context"]) for x in llm["rows"]][:4] == [
        ("prefill", 1, 1024), ("decode", 1, 1024), ("prefill", 1, 8192), ("decode", 1, 8192)]
    # the per-chip tables are one decode step after 1024 cached tokens: the MACs of that step
    assert d["models"][0]["characteristics"]["macs"] == 1_235_746_816 + LAYERS * 2 * 32 * 1025 * HEAD
    assert any("one decode step" in n for n in d["notes"])


def test_compare_of_two_decoders_is_the_reports_decode_step():
    # compare is study.build without the report's extra parts: the same decode step, no LLM section
    r = runner.invoke(app, ["compare", PLAIN, INT4, "--hw", "h100-sxm5", "--batch", "1", "-f", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    step_macs = 1_235_746_816 + LAYERS * 2 * 32 * 1025 * HEAD
    assert {n: c["macs"] for n, c in d["characteristics"].items()} == {"llama_1b_kv": step_macs,
                                                                       "llama_1b_int4": step_macs}
    assert sum("one decode step" in n for n in d["notes"]) == 2 and "llm" not in d
    assert [(x["model"], x["batch"]) for x in d["results"]] == [("llama_1b_kv", 1), ("llama_1b_int4", 1)]
    assert [x["model"] for x in d["advice"]] == ["llama_1b_kv", "llama_1b_int4"]


def test_a_cpu_reading_an_embedding_row_is_still_under_the_bound():
    """The genai file keeps a 1 GiB fp32 embedding table a step reads one row of: the bound counts what a
    step reads, so a CPU whose decode is all DRAM traffic sits just under it, never over."""
    d = study(INT4, Query(("host", "xeon-8490h", "raspberry-pi-5"), (1,), (512,)))
    for r in d["rows"]:
        if r["phase"] == "decode":
            assert 0 < r["of_bound"] <= 1, r


def test_json_output_follows_its_schema():
    import pathlib

    import jsonschema

    schema = json.loads((pathlib.Path(__file__).resolve().parent.parent / "onnx_hwutil" / "schemas"
                         / "llm.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    r = runner.invoke(app, ["llm", INT4, "--hw", "h100-sxm5,a100-sxm4", "--context", "512", "--prompt", "64",
                            "--kv", "fp8", "--devices", "2", "-f", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    jsonschema.validate(d, schema)
    assert d["schema"] == "onnx-hwutil/llm/1" and len(d["rows"]) == 4 and len(d["tensor_parallel"]) == 2
    d["rows"][0]["tokens/s"] = 1.0  # a renamed field is a schema change, caught
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, schema)


def test_dequantizing_weights_runs_on_every_core_the_product_uses():
    """MatMulNBits at one token: 2048 outputs, 4 M weights to scale and shift. Split by its outputs, a Xeon
    put the dequantization on one core and called a one-token int4 step compute-bound; it runs on the cores
    the product occupies."""
    m = DecoderModel(INT4, find_decoder(load_model(INT4)))
    run = m.run(Phase("decode", 1, 512), load_spec("xeon-8490h"), "bf16", "model", "model", "aggressive")
    nbits = [k for k in run.schedule.kernels if k.label.startswith("MatMulNBits")]
    assert len(nbits) == 16 * 7 + 1  # q, k, v, o, gate, up, down per layer; the LM head
    big = [k for k in nbits if k.dram_bytes > 2e6]  # q, o, gate, up, down, the head: 4 M weights and more
    assert len(big) == 16 * 5 + 1 and {k.bound for k in big} == {"memory"}
    head = max(nbits, key=lambda k: k.dram_bytes)
    assert head.units == 60 and head.latency_s < 0.5e-3
