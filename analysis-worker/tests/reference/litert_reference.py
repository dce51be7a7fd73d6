"""Reference outputs of a .tflite model from the official runtime (LiteRT, XNNPACK on CPU).

Test-only: the worker's golden test runs this on the same input tensor it gives
its candle implementation and compares the outputs.

    litert_reference.py MODEL.tflite INPUT.npy OUTPUT.npz
        writes every model output, keyed by its TFLite name (e.g. "Identity").
    litert_reference.py MODEL.tflite INPUT.npy --bench RUNS --threads N
        prints the mean wall and CPU milliseconds per inference over RUNS (after warm-up),
        then the fastest and the median single inference's wall milliseconds.
    litert_reference.py MODEL.tflite INPUT.npy --serve --threads N
        for each line N read from stdin, runs N inferences and prints each one's
        wall milliseconds on one line: a caller takes turns with it in short blocks.
"""

import argparse
import statistics
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("output", nargs="?")
    parser.add_argument("--bench", type=int, default=0)
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    interpreter = Interpreter(model_path=args.model, num_threads=args.threads)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    interpreter.set_tensor(input_detail["index"], np.load(args.input).astype(np.float32))

    for _ in range(5 if args.bench or args.serve else 0):
        interpreter.invoke()

    if args.serve:
        for line in sys.stdin:
            print(" ".join(f"{t:.4f}" for t in timed_runs(interpreter, int(line))), flush=True)
        return

    if args.bench:
        start, start_cpu = time.perf_counter(), time.process_time()
        single = timed_runs(interpreter, args.bench)
        wall = (time.perf_counter() - start) * 1000.0 / args.bench
        cpu = (time.process_time() - start_cpu) * 1000.0 / args.bench
        print(f"{wall:.3f} {cpu:.3f} {min(single):.3f} {statistics.median(single):.3f}")
        return

    interpreter.invoke()
    outputs = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    np.savez(args.output, **outputs)


def timed_runs(interpreter, runs):
    """Each of `runs` inferences' wall milliseconds."""
    times = []
    for _ in range(runs):
        before = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - before) * 1000.0)
    return times


if __name__ == "__main__":
    main()
