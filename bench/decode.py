"""Decoding speed of a bundle (or of a random default-size model), and how close it gets to the
machine's measured matmul throughput.

    python bench/decode.py --model models/en-de-multi30k \\
        --src ../shared/data/multi30k/test_2016_flickr.en.gz
    python bench/decode.py --random-model --src ../shared/data/multi30k/test_2016_flickr.en.gz \\
        --limit 200

Prints one table: sentences/s and target tokens/s for greedy and beam 5, at batch size 1 (the
first --batch1-limit sentences, one call each) and batched (all sentences in one call, cut into
--batch-tokens batches by the Translator), for fp32 and int8 (dynamic quantization). Each time
is the median of --repeats runs of Translator.translate, model loading excluded; batch-1 rows
also give the median latency of one sentence (interactive use). A third row per search,
"N shuffled" (--service-size N, default 32), translates all sentences again in random batches
of N, one call each: the batches a service forms from N concurrent clients, computed back to
back with no HTTP time at all, the most such a service could answer per second; its share of
the batched row is printed too. Also printed:
the model's MACs per target token (per beam row and step) and per source token, this machine's
matmul GFLOP/s at beam-search shapes, the achieved fraction of it, and the peak RSS.
`--device cuda --precisions fp32` times the float model on the GPU (against the GPU's fp32 mm).

--service-batches 1,16,32 instead times greedy search (beam search with --service-beam K) on
unsorted batches of random sentences of those sizes, as the service forms them from concurrent
requests, on --threads threads: encoder, shortlist and search apart, the steps each batch ran
(its longest sentence's), time per step; with the compiled search loops and the Python ones.

--random-model builds the issue's default-size network (2-layer bi-LSTM 512, 2-layer decoder
512, embeddings 256, vocabulary 8k) with random weights, so the batched-vs-batch-1 floor can
be checked without a trained model. Its tokenizer comes from --model when given, otherwise from
a SentencePiece model trained on --src in a temporary directory. Where that vocabulary is
smaller than 8k, the output bias of the extra ids is set to -1e4: the projection still costs
the full 8k columns, but only ids the tokenizer can spell are chosen. Random weights rarely
choose EOS, so hypotheses run to the length limit (1.5 * source + 10): compare tokens/s, not
sentences/s, with a trained model.
"""

from __future__ import annotations

import argparse
import gzip
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import sentencepiece as spm
import torch
from torch import nn

from model import (
    DecodeOptions,
    ModelConfig,
    Result,
    Seq2Seq,
    Tokenizer,
    Translator,
    load_bundle,
)
from model.allocator import keep_freed_memory
from model.bundle import Bundle
from model.placement import quantize_int8
from model.tokenizer import SPM_SPECIAL_IDS
from model.translator import use_cores

RANDOM_VOCAB = 8000
FULL_VOCAB = "-full"  # precision suffix: score the whole vocabulary even with a shortlist


# --- model arithmetic ---------------------------------------------------------------------------


def lstm_macs(input_size: int, hidden: int) -> int:
    """Multiply-accumulates of one LSTM cell step: four gates over [input; hidden]."""
    return 4 * hidden * (input_size + hidden)


def decoder_macs(cfg: ModelConfig, src_len: float, scored: float | None = None) -> dict[str, float]:
    """MACs of one decoder step for one beam row (one target token), by part.

    Attention scores and context each cost S*H; the key projection runs once per source token
    and is counted with the encoder. Without input feeding the first layer's input gates are
    looked up per token (``Decoder.prepare_search``), so only its recurrent half is counted.
    ``scored``: target ids the output layer computes (the batch's shortlist), default the whole
    vocabulary.
    """
    hidden, out = cfg.hidden_size, cfg.out_size
    first_in = cfg.emb_size + out if cfg.input_feeding else 0
    lstm = lstm_macs(first_in, hidden) + (cfg.decoder_layers - 1) * lstm_macs(hidden, hidden)
    attention = 2 * src_len * hidden + (hidden * hidden if cfg.attention == "additive" else 0)
    parts = {
        "decoder LSTM": float(lstm),
        "attention": attention,
        "combine": float(2 * hidden * out),
        "generator": float(out * (scored or cfg.tgt_vocab_size)),
    }
    parts["total"] = sum(parts.values())
    return parts


def encoder_macs(cfg: ModelConfig) -> float:
    """MACs per source token: both directions of every layer, plus the attention keys."""
    half = cfg.hidden_size // 2
    macs = 2 * lstm_macs(cfg.emb_size, half)
    macs += (cfg.encoder_layers - 1) * 2 * lstm_macs(cfg.hidden_size, half)
    if cfg.attention != "dot":
        macs += cfg.hidden_size * cfg.hidden_size
    return float(macs)


# --- machine peak ---------------------------------------------------------------------------------


def best_seconds(fn: Callable[[], object], min_time: float = 0.3, min_iters: int = 5) -> float:
    """The fastest of at least ``min_iters`` calls (and ``min_time`` seconds) after a warm-up."""
    for _ in range(2):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@torch.inference_mode()
def matmul_gflops(device: str = "cpu") -> dict[str, float]:
    """GFLOP/s (2 x MACs / s) of fp32 torch.mm and (on the CPU) of a dynamic-int8 Linear, at
    beam-like shapes. On CUDA each product is waited for, so the time is the kernel's."""

    def mm(a: torch.Tensor, b: torch.Tensor) -> None:
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()

    results = {}
    for m, k, n in ((320, 1280, 2048), (320, 256, 8000), (320, 512, 8000)):
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        results[f"fp32 mm {m}x{k}x{n}"] = 2 * m * k * n / best_seconds(partial(mm, a, b)) / 1e9
    if device != "cpu":
        return results  # int8 dynamic quantization has CPU kernels only
    m, k, n = 320, 1280, 2048
    linear = quantize_int8(nn.Sequential(nn.Linear(k, n, bias=False)))
    x = torch.randn(m, k)
    results[f"int8 Linear {m}x{k}x{n}"] = 2 * m * k * n / best_seconds(lambda: linear(x)) / 1e9
    return results


@torch.inference_mode()
def step_kernel_ms(
    out_features: int = 8000, in_features: int = 256
) -> list[tuple[int, float, float]]:
    """(rows, nn.Linear ms, weight-left ms) for the output layer's shape at search batch sizes.

    model/step_kernels.py takes the weight-left path for at most FEW_ROWS rows; this is the
    measurement behind that threshold.
    """
    layer = nn.Linear(in_features, out_features)
    results = []
    for rows in (1, 5, 16, 32, 64, 96, 160, 512, 1500):
        x = torch.randn(rows, in_features)
        plain = best_seconds(lambda x=x: layer(x))
        left = best_seconds(
            lambda x=x: torch.addmm(layer.bias.unsqueeze(1), layer.weight, x.t()).t().contiguous()
        )
        results.append((rows, 1e3 * plain, 1e3 * left))
    return results


def print_step_kernels(results: list[tuple[int, float, float]]) -> None:
    print("output layer 256 -> 8000 per step, ms: rows, x @ W.T (nn.Linear), (W @ x.T).T")
    for rows, plain, left in results:
        print(f"  {rows:5d}  {plain:8.3f}  {left:8.3f}  ({plain / left:.1f}x)")


# --- models -------------------------------------------------------------------------------------


def read_lines(path: Path, limit: int | None) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        lines = [line.rstrip("\n") for line in f]
    return lines[:limit] if limit else lines


def train_spm(lines: list[str], workdir: Path) -> Path:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(workdir / "spm"),
        vocab_size=RANDOM_VOCAB,
        hard_vocab_limit=False,  # a small file gives fewer pieces
        character_coverage=1.0,
        **SPM_SPECIAL_IDS,
        num_threads=2,
        minloglevel=2,
    )
    return workdir / "spm.model"


def random_bundle(tokenizer: Tokenizer, input_feeding: bool) -> Bundle:
    """The default-size network with random weights, as a Bundle the Translator accepts."""
    torch.manual_seed(0)
    config = ModelConfig(
        src_vocab_size=RANDOM_VOCAB,
        tgt_vocab_size=RANDOM_VOCAB,
        emb_size=256,
        hidden_size=512,
        encoder_layers=2,
        decoder_layers=2,
        attention="general",
        input_feeding=input_feeding,
        dropout=0.0,
    )
    model = Seq2Seq(config)
    with torch.no_grad():
        model.decoder.generator.bias[tokenizer.tgt_vocab_size :] = -1e4
    unique = {name for name, _ in model.named_parameters()}  # no tied aliases, as when saved
    state = {k: v for k, v in model.state_dict().items() if k in unique}
    return Bundle(Path("random-default-size"), config, tokenizer, state, {"model_id": "random"})


# --- timing ---------------------------------------------------------------------------------------


@dataclass
class Row:
    precision: str
    search: str
    batch: str
    sentences: int
    seconds: float
    target_tokens: int
    source_tokens: int
    beam: int
    latencies_ms: list[float] = field(default_factory=list)  # per sentence, batch 1 only
    scored: tuple[float, float] | None = None  # shortlist: mean (union, per sentence) ids

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None

    @property
    def sent_per_s(self) -> float:
        return self.sentences / self.seconds

    @property
    def tok_per_s(self) -> float:
        return self.target_tokens / self.seconds


def timed(run: Callable[[], list[Result]], repeats: int) -> tuple[list[float], list[Result]]:
    """Seconds of each of ``repeats`` runs, and the results of the last."""
    times, results = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        results = run()
        times.append(time.perf_counter() - t0)
    return times, results


def mean_scored(
    translator: Translator, texts: list[str], beam: int, alone: bool
) -> tuple[float, float] | None:
    """Mean target ids the output layer computes per batch (the union of its sentences'
    shortlists) and the mean a sentence keeps for its softmax and top-k, over the batches the
    Translator forms."""
    if translator.shortlist is None:
        return None
    encoded = enumerate(map(translator.tokenizer.encode_source, texts))
    items = sorted(encoded, key=lambda item: len(item[1]))
    batches = [[i] for i in items] if alone else translator._batches(items, beam)  # noqa: SLF001
    unions, widths = [], []
    for batch in batches:
        src = torch.nn.utils.rnn.pad_sequence([torch.tensor(ids) for _, ids in batch], True)
        ids, columns, _ = translator.shortlist.candidates(src)
        unions.append(ids.numel())
        widths += [columns.size(1)] * len(batch)
    return statistics.mean(unions), statistics.mean(widths)


def one_at_a_time(
    translator: Translator, texts: list[str], options: DecodeOptions, latencies_ms: list[float]
) -> list[Result]:
    """Interactive use: each sentence translated alone; its latency is appended in ms."""
    results = []
    for text in texts:
        t0 = time.perf_counter()
        results.append(translator.translate([text], options)[0])
        latencies_ms.append(1000 * (time.perf_counter() - t0))
    return results


def shuffled_batches(lines: list[str], size: int) -> list[list[str]]:
    """``lines`` in random order (the same each run), cut into batches of ``size``."""
    order = random.Random(0).sample(lines, len(lines))
    return [order[i : i + size] for i in range(0, len(order), size)]


def each_batch(
    translator: Translator, batches: list[list[str]], options: DecodeOptions
) -> list[Result]:
    """Each batch in its own call, as a server computes the batches it forms."""
    return [result for batch in batches for result in translator.translate(batch, options)]


def bench_translator(
    translator: Translator, precision: str, lines: list[str], args: argparse.Namespace
) -> list[Row]:
    rows = []
    searches = {"greedy": DecodeOptions(beam_size=1), f"beam {args.beam}": DecodeOptions(args.beam)}
    translator.translate(lines[:8], searches["greedy"])  # warm-up: allocator, thread pool
    for search, options in searches.items():
        subset, latencies_ms = lines[: args.batch1_limit], []
        modes: dict[str, tuple[list[str], Callable[[], list[Result]]]] = {
            "1": (subset, partial(one_at_a_time, translator, subset, options, latencies_ms)),
            "batched": (lines, lambda o=options: translator.translate(lines, o)),
        }
        if args.service_size:
            shuffled = shuffled_batches(lines, args.service_size)
            modes[f"{args.service_size} shuffled"] = (
                lines,
                partial(each_batch, translator, shuffled, options),
            )
        for batch, (texts, run) in modes.items():
            times, results = timed(run, args.repeats)
            seconds = statistics.median(times)
            rows.append(
                Row(
                    precision,
                    search,
                    batch,
                    len(texts),
                    seconds,
                    sum(len(r.candidates[0].token_ids) for r in results if r.candidates),
                    sum(translator.count_tokens(t) for t in texts),
                    options.beam_size,
                    latencies_ms if batch == "1" else [],
                    None
                    if batch not in ("1", "batched")
                    else mean_scored(translator, texts, options.beam_size, alone=batch == "1"),
                )
            )
            spread = ", ".join(f"{t:.2f}" for t in times)
            print(f"  {precision} {search} batch={batch}: {seconds:.2f} s ({spread})", flush=True)
    return rows


def achieved_gflops(row: Row, cfg: ModelConfig, src_len: float) -> float:
    """Useful work per second: encoder per source token, decoder per beam row per step.

    Decoder steps = target tokens + one EOS step per sentence, times the beam size; padding,
    finished rows and search overhead are not counted as useful.
    """
    steps = (row.target_tokens + row.sentences) * row.beam
    per_step = decoder_macs(cfg, src_len, row.scored and row.scored[0])["total"]
    macs = encoder_macs(cfg) * row.source_tokens + per_step * steps
    return 2 * macs / row.seconds / 1e9


def time_parts(
    translator: Translator, batches: list[list[list[int]]], options: DecodeOptions
) -> tuple[float, float, float, int]:
    """Seconds in the encoder, the shortlist and the search over ``batches``, and the steps run
    (each batch's longest hypothesis + EOS)."""
    for ids in batches[:3]:
        translator.decode_ids(ids, options)  # warm-up
    encoder_s = shortlist_s = total_s = 0.0
    steps = 0
    with torch.inference_mode():
        for ids in batches:
            src = torch.nn.utils.rnn.pad_sequence([torch.tensor(i) for i in ids], True)
            started = time.perf_counter()
            translator.model.encoder(src, torch.tensor([len(i) for i in ids]))
            encoded = time.perf_counter()
            if translator.shortlist is not None and translator.output_layer is not None:
                translator.output_layer.restrict(translator.shortlist.candidates(src))
            listed = time.perf_counter()
            hypotheses = translator.decode_ids(ids, options)  # encodes and lists again
            encoder_s += encoded - started
            shortlist_s += listed - encoded
            total_s += time.perf_counter() - listed
            steps += 1 + max(len(h[0].token_ids) for h in hypotheses)
    return encoder_s, shortlist_s, total_s - encoder_s - shortlist_s, steps


def service_batches(
    translator: Translator, lines: list[str], sizes: list[int], beam_size: int = 1
) -> None:
    """Search on unsorted batches of random sentences, as the service forms them: the encoder
    and the batch's shortlist (candidates and output rows) timed apart from the search, with
    the steps the search ran (as many as its longest sentence needs). Where the translator has
    the compiled search loops (int8), the same batches also run the Python loops."""
    rng = random.Random(0)
    options = DecodeOptions(beam_size=beam_size)
    compiled = translator.compiled_search
    loops = {"compiled": compiled, "python": None} if compiled is not None else {"python": None}
    print(
        f"batch  loop      encoder ms  shortlist ms  search ms  steps  us/step  ms/sentence   "
        f"({torch.get_num_threads()} threads, beam {beam_size})"
    )
    for size in sizes:
        batches = [
            [translator.tokenizer.encode_source(t) for t in rng.sample(lines, size)]
            for _ in range(30)
        ]
        for name, loop in loops.items():
            translator.compiled_search = loop
            encoder_s, shortlist_s, search_s, steps = time_parts(translator, batches, options)
            n, total_s = len(batches), encoder_s + shortlist_s + search_s
            print(
                f"{size:>5}  {name:<8} {1000 * encoder_s / n:>11.2f}"
                f" {1000 * shortlist_s / n:>13.2f} {1000 * search_s / n:>10.2f}"
                f" {steps / n:>6.1f} {1e6 * search_s / steps:>8.0f}"
                f" {1000 * total_s / (n * size):>12.2f}"
            )
    translator.compiled_search = compiled


def find_row(rows: list[Row], precision: str, search: str, batch: str) -> Row:
    return next(r for r in rows if (r.precision, r.search, r.batch) == (precision, search, batch))


def shuffled_shares(rows: list[Row]) -> list[str]:
    """For each shuffled row, its sentences/s over the batched row of the same search."""
    lines = []
    for r in rows:
        if r.batch.endswith(" shuffled"):
            share = r.sent_per_s / find_row(rows, r.precision, r.search, "batched").sent_per_s
            lines.append(f"  {r.precision} {r.search} batch={r.batch}: {share:.3f}")
    return lines


def print_report(
    rows: list[Row], cfg: ModelConfig, src_len: float, peaks: dict[str, float], label: str
) -> None:
    fp32_peak = max(v for k, v in peaks.items() if k.startswith("fp32"))
    int8_peak = max((v for k, v in peaks.items() if k.startswith("int8")), default=0.0)
    print(f"\n{label}")
    print(
        f"emb {cfg.emb_size}, hidden {cfg.hidden_size}, encoder {cfg.encoder_layers}x bi-LSTM, "
        f"decoder {cfg.decoder_layers}x LSTM, {cfg.attention} attention, input feeding "
        f"{cfg.input_feeding}, tied {cfg.tie_embeddings}, vocabulary {cfg.tgt_vocab_size}; "
        f"torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    print(
        "\n| precision | search | batch | sentences | sent/s | tgt tok/s | p50 ms/sentence "
        "| GFLOP/s | of peak |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        gflops = achieved_gflops(r, cfg, src_len)
        peak = int8_peak if r.precision == "int8" else fp32_peak
        p50 = "" if r.p50_ms is None else f"{r.p50_ms:.1f}"
        print(
            f"| {r.precision} | {r.search} | {r.batch} | {r.sentences} | {r.sent_per_s:.1f} "
            f"| {r.tok_per_s:.0f} | {p50} | {gflops:.1f} | {100 * gflops / peak:.0f}% |"
        )
    print("\nbatched / batch-1 throughput:")
    for precision in dict.fromkeys(r.precision for r in rows):
        for search in dict.fromkeys(r.search for r in rows):
            one, many = (find_row(rows, precision, search, b) for b in ("1", "batched"))
            print(
                f"  {precision} {search}: {many.sent_per_s / one.sent_per_s:.1f}x sentences/s, "
                f"{many.tok_per_s / one.tok_per_s:.1f}x target tokens/s"
            )
    shares = shuffled_shares(rows)
    if shares:
        print("\nshuffled / batched sentences/s (the ceiling of a service with that many clients):")
        print("\n".join(shares))
    parts = decoder_macs(cfg, src_len)
    print(f"\nMACs per target token per beam row (mean source length {src_len:.1f} tokens):")
    for name, value in parts.items():
        print(f"  {name:>13}: {value / 1e6:.3f} M")
    print(f"MACs per source token (encoder + attention keys): {encoder_macs(cfg) / 1e6:.3f} M")
    for r in rows:
        if r.scored is not None:
            union, kept = r.scored
            generator = decoder_macs(cfg, src_len, union)["generator"]
            print(
                f"  {r.precision} {r.search} batch={r.batch}: the output layer computes "
                f"{union:.0f} shortlisted ids per batch (generator {generator / 1e6:.3f} M "
                f"MACs), softmax and top-k see {kept:.0f} per sentence"
            )
    print("matmul peak on this machine (best of several runs):")
    for name, value in peaks.items():
        print(f"  {name}: {value:.0f} GFLOP/s")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss_mb:.0f} MB")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="bundle directory")
    parser.add_argument("--random-model", action="store_true", help="random default-size model")
    parser.add_argument("--input-feeding", action="store_true", help="random model: input feed")
    parser.add_argument("--src", type=Path, help="source sentences (.gz ok)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N sentences")
    parser.add_argument("--batch1-limit", type=int, default=100, help="sentences at batch 1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--lanes",
        type=int,
        default=None,
        help="int8 batches in this many lanes of one thread each (default: --threads; "
        "1: --threads intra-op threads instead)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument(
        "--service-size",
        type=int,
        default=32,
        help="also time random batches of this many sentences, one call each (0: not)",
    )
    parser.add_argument(
        "--precisions",
        default="fp32,int8",
        help=f"comma-separated; '{FULL_VOCAB}' after one (int8{FULL_VOCAB}) ignores the shortlist",
    )
    parser.add_argument(
        "--kernels", action="store_true", help="only time the step matmul both ways, then exit"
    )
    parser.add_argument(
        "--service-batches",
        metavar="SIZES",
        help="only time search on unsorted batches of these comma-separated sizes, as the "
        "service forms them, encoder, shortlist and search apart, with --model; then exit",
    )
    parser.add_argument(
        "--service-beam", type=int, default=1, help="beam size for --service-batches (1: greedy)"
    )
    args = parser.parse_args()
    if args.kernels:
        return args
    if not args.model and not args.random_model:
        parser.error("give --model DIR, --random-model, or both")
    if args.src is None:
        parser.error("--src is required (except with --kernels)")
    if args.device == "cuda" and "int8" in args.precisions:
        parser.error("int8 has CPU kernels only: give --precisions fp32 with --device cuda")
    return args


def bundle_to_time(args: argparse.Namespace, workdir: Path) -> tuple[Bundle, str]:
    """The bundle ``args`` ask for, and a line that says what it is."""
    if not args.random_model:
        return load_bundle(args.model), f"bundle {args.model}"
    tokenizer = (
        load_bundle(args.model).tokenizer
        if args.model
        else Tokenizer(train_spm(read_lines(args.src, None), workdir))
    )
    label = f"random default-size model, tokenizer vocabulary {tokenizer.tgt_vocab_size}"
    return random_bundle(tokenizer, args.input_feeding), label


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `nmt translate` and `nmt serve` do
    if args.kernels:
        print_step_kernels(step_kernel_ms())
        return
    lines = [line for line in read_lines(args.src, args.limit) if line.strip()]
    if args.service_batches:
        translator = Translator(load_bundle(args.model), quantize="int8")
        sizes = [int(n) for n in args.service_batches.split(",")]
        service_batches(translator, lines, sizes, args.service_beam)
        return

    with tempfile.TemporaryDirectory() as tmp:
        bundle, label = bundle_to_time(args, Path(tmp))
        lanes = args.lanes or args.threads
        label += f"; {args.threads} threads" + (f", int8 in {lanes} lanes" if lanes > 1 else "")
        print(f"{label}; {len(lines)} sentences", flush=True)
        peaks = matmul_gflops(args.device)
        rows: list[Row] = []
        for precision in args.precisions.split(","):
            quantize = "int8" if precision.startswith("int8") else "none"
            translator = Translator(
                bundle,
                device=args.device,
                quantize=quantize,
                batch_tokens=args.batch_tokens,
                shortlist=not precision.endswith(FULL_VOCAB),
                lanes=lanes,
            )
            use_cores(translator, args.threads)
            rows += bench_translator(translator, precision, lines, args)
            del translator
    batched = next(r for r in rows if r.batch == "batched")
    print_report(rows, bundle.config, batched.source_tokens / batched.sentences, peaks, label)
    if args.device == "cpu":
        print_step_kernels(step_kernel_ms())


if __name__ == "__main__":
    main()
