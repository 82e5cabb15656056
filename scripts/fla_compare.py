#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""FLA's chunk_gated_delta_product and gdp on the same GPU in one run (issue 6's comparison).

Run by scripts/gpu_fla_compare.sh on the GPU machine, which also makes the packed gdp_app
runnable. FLA is not part of gdp: pass the folder that holds its `fla` package (a checkout of
fla-org/flash-linear-attention) with --fla-src; it needs PyTorch and Triton, which the GPU
machine has.

1. Accuracy first (METHOD.md): FLA's bf16 forward against a float64 recurrence (ALGORITHM.md
   section 1, computed here with PyTorch on the bf16-rounded inputs), as the largest relative
   Frobenius error over the (sequence, head) pairs, which is what `gdp_app verify` prints for
   gdp; then `gdp_app verify` on the same shape.
2. Times of each shape: FLA's forward (and forward+backward where FLA runs it) as the median
   of triton.testing.do_bench after an untimed call; gdp's allocating forward, its forward
   into given outputs and its training step into given tensors (`gdp_app bench`), whose
   medians are converted to milliseconds from the useful work that gdp_app counts.
Inputs as ../shared/bench/fla_h100.md describes: bf16 q, k, v, beta; g = logsigmoid(N(0,1)) in
float32; k rows of unit length; beta ~ U(0,1); h0 ~ 0.1 N(0,1); scale 1/sqrt(K); final state
returned. gdp_app draws its own inputs of the same kinds (src/common/random_problem.hpp).
"""
import argparse
import re
import subprocess
import sys


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fla-src", required=True, help="folder holding FLA's `fla` package")
    parser.add_argument("--gdp-app", required=True, help="the gdp_app program to run")
    parser.add_argument("--shapes", default="8-2048-16-128-2,8-2048-16-128-2-ungated,"
                        "1-32768-16-128-2,4-4096-16-128-3",
                        help="comma-separated B-T-H-K-n[-ungated] (K = V)")
    parser.add_argument("--rounds", type=int, default=2, help="gdp_app bench rounds per shape")
    parser.add_argument("--no-step", action="store_true", help="time forwards only")
    return parser.parse_args()


def parse_shape(text):
    fields = text.split("-")
    B, T, H, K, n = (int(x) for x in fields[:5])
    return B, T, H, K, n, not (len(fields) > 5 and fields[5] == "ungated")


def useful_gflop(B, T, H, K, n, gated):
    """gdp's useful work of one forward (src/common/useful_work.hpp): 4KV a sub-step, 2KV a
    read-out, KV a gate, per token and head."""
    return B * T * H * (4 * n + 2 + (1 if gated else 0)) * K * K / 1e9


def draw_inputs(torch, B, T, H, K, n, gated):
    F = torch.nn.functional
    device = "cuda"
    q = torch.randn(B, T, H, K, device=device).to(torch.bfloat16)
    k = F.normalize(torch.randn(B, T * n, H, K, device=device), p=2, dim=-1).to(torch.bfloat16)
    v = torch.randn(B, T * n, H, K, device=device).to(torch.bfloat16)
    beta = torch.rand(B, T * n, H, device=device).to(torch.bfloat16)
    g = F.logsigmoid(torch.randn(B, T, H, device=device)) if gated else None
    h0 = 0.1 * torch.randn(B, H, K, K, device=device)
    return q, k, v, beta, g, h0


def float64_recurrence(torch, q, k, v, beta, g, h0, n):
    """ALGORITHM.md section 1 in float64: per token the gate, n Householder sub-steps, the
    read-out; every (sequence, head) pair at once."""
    q, k, v, beta, h0 = (x.double() for x in (q, k, v, beta, h0))
    B, T, H, K = q.shape
    scale = K ** -0.5
    S = h0.clone()
    o = torch.empty(B, T, H, v.shape[-1], dtype=torch.float64, device=q.device)
    for t in range(T):
        if g is not None:
            S = S * torch.exp(g[:, t].double())[:, :, None, None]
        for j in range(n):
            p = t * n + j
            key = k[:, p]
            delta = v[:, p] - torch.einsum("bhkv,bhk->bhv", S, key)
            S = S + beta[:, p, :, None, None] * key[..., :, None] * delta[..., None, :]
        o[:, t] = scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t].double())
    return o, S


def largest_pair_error(torch, result, reference, pair_axes):
    """The largest relative Frobenius error over (sequence, head) pairs, `pair_axes` naming
    the two axes of the pair."""
    result, reference = result.double(), reference.double()
    other = tuple(a for a in range(result.dim()) if a not in pair_axes)
    difference = torch.linalg.vector_norm(result - reference, dim=other)
    norm = torch.linalg.vector_norm(reference, dim=other)
    return float((difference / norm).max())


def fla_accuracy(torch, chunk_gated_delta_product, shape):
    B, T, H, K, n, gated = shape
    torch.manual_seed(1)
    q, k, v, beta, g, h0 = draw_inputs(torch, B, T, H, K, n, gated)
    o_ref, ht_ref = float64_recurrence(torch, q, k, v, beta, g, h0, n)
    o, ht = chunk_gated_delta_product(q, k, v, g, beta, n, initial_state=h0,
                                      output_final_state=True)
    return (largest_pair_error(torch, o, o_ref, (0, 2)),
            largest_pair_error(torch, ht, ht_ref, (0, 1)))


def fla_times(torch, triton, chunk_gated_delta_product, shape, with_step):
    B, T, H, K, n, gated = shape
    q, k, v, beta, g, h0 = draw_inputs(torch, B, T, H, K, n, gated)

    def forward():
        chunk_gated_delta_product(q, k, v, g, beta, n, initial_state=h0, output_final_state=True)
    forward()
    forward_ms = triton.testing.do_bench(forward, warmup=25, rep=100, return_mode="median")
    if not with_step:
        return forward_ms, None
    leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v, beta, h0)]
    g_leaf = g.detach().clone().requires_grad_(True) if gated else None
    d_o = torch.randn_like(q)
    d_ht = 0.1 * torch.randn_like(h0)

    def step():
        o, ht = chunk_gated_delta_product(leaves[0], leaves[1], leaves[2], g_leaf, leaves[3], n,
                                          initial_state=leaves[4], output_final_state=True)
        torch.autograd.backward([o, ht], [d_o, d_ht])
    try:
        step()
    except Exception as refusal:  # FLA refuses its gated backward with some Triton versions
        return forward_ms, "refused: " + str(refusal).splitlines()[0]
    return forward_ms, triton.testing.do_bench(step, warmup=25, rep=100, return_mode="median")


def gdp_bench_gflops(gdp_app, shape, extra):
    """The GFLOP/s of the last column of gdp_app bench's `all` row (the step's with --backward)."""
    B, T, H, K, n, gated = shape
    command = [gdp_app, "bench", "-B", str(B), "-T", str(T), "-H", str(H), "-K", str(K),
               "-V", str(K), "-n", str(n), "--dtype", "bf16", "--space", "cuda",
               "--repeats", "30", "--warmup", "5"] + ([] if gated else ["--no-gated"]) + extra
    run = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    rows = [line for line in run.stdout.splitlines() if line.startswith(" all")]
    if run.returncode != 0 or not rows:
        sys.exit(f"fla_compare: {' '.join(command)} failed ({run.returncode}):\n{run.stderr}")
    return float(rows[-1].split()[-1])


def gdp_verify(gdp_app, shape):
    B, T, H, K, n, gated = shape
    command = [gdp_app, "verify", "-B", str(B), "-T", str(T), "-H", str(H), "-K", str(K),
               "-V", str(K), "-n", str(n), "--h0", "--dtype", "bf16", "--space", "cuda"]
    command += [] if gated else ["--no-gated"]
    run = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    found = re.search(r"largest relative error: o (\S+), ht (\S+);", run.stdout)
    if run.returncode != 0 or not found:
        sys.exit(f"fla_compare: {' '.join(command)} failed ({run.returncode}):\n"
                 f"{run.stdout}{run.stderr}")
    return float(found.group(1)), float(found.group(2))


def milliseconds(cells):
    return " / ".join(f"{x:.3f}" for x in cells)


def main():
    arguments = parse_arguments()
    sys.path.insert(0, arguments.fla_src)
    import torch
    import triton
    from fla.ops.gated_delta_product import chunk_gated_delta_product

    print(f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"triton {triton.__version__}", flush=True)
    accuracy_shape = (2, 300, 3, 128, 2, True)
    fla_o, fla_ht = fla_accuracy(torch, chunk_gated_delta_product, accuracy_shape)
    gdp_o, gdp_ht = gdp_verify(arguments.gdp_app, accuracy_shape)
    print(f"accuracy, 2-300-3-128-2 gated bf16 against float64 (largest relative error of a "
          f"(sequence, head) pair): FLA o {fla_o:.3e} ht {fla_ht:.3e}; "
          f"gdp o {gdp_o:.3e} ht {gdp_ht:.3e}", flush=True)

    rows = []
    for text in arguments.shapes.split(","):
        shape = parse_shape(text)
        fla_forward, fla_step = fla_times(torch, triton, chunk_gated_delta_product, shape,
                                          not arguments.no_step)
        work = useful_gflop(*shape)
        forward, into, step = [], [], []
        for _ in range(arguments.rounds):
            forward.append(work / gdp_bench_gflops(arguments.gdp_app, shape, []) * 1e3)
            into.append(work / gdp_bench_gflops(arguments.gdp_app, shape, ["--outputs-into"]) * 1e3)
            if not arguments.no_step:
                step.append(3 * work / gdp_bench_gflops(
                    arguments.gdp_app, shape,
                    ["--backward", "--outputs-into", "--gradients-into"]) * 1e3)
        rows.append((text, fla_forward, fla_step, forward, into, step))
        fla_step_text = f"{fla_step:.3f} ms" if isinstance(fla_step, float) else fla_step
        print(f"{text}: FLA forward {fla_forward:.3f} ms, step {fla_step_text}; gdp forward "
              f"{milliseconds(forward)}, into {milliseconds(into)}, step {milliseconds(step)}",
              flush=True)

    print("\nms (gdp: each round's median; FLA over gdp: FLA's time over gdp's fastest round,")
    print("above 1 where gdp is faster)")
    print(f"{'shape':24} {'FLA fwd':>8} {'gdp fwd':>15} {'gdp fwd into':>15} {'FLA/into':>8} "
          f"{'FLA step':>9} {'gdp step':>15} {'FLA/step':>8}")
    for text, fla_forward, fla_step, forward, into, step in rows:
        step_cells = (f"{fla_step:9.3f}" if isinstance(fla_step, float) else f"{'refused':>9}",
                      milliseconds(step) if step else "-",
                      f"{fla_step / min(step):8.2f}" if isinstance(fla_step, float) and step
                      else "-")
        print(f"{text:24} {fla_forward:8.3f} {milliseconds(forward):>15} {milliseconds(into):>15} "
              f"{fla_forward / min(into):8.2f} {step_cells[0]} {step_cells[1]:>15} "
              f"{step_cells[2]:>8}")


if __name__ == "__main__":
    main()
