"""Fused PLE vs a naive per-expert ``Dense`` PLE: forward + backward time, float32 and bf16.

The naive version is built like DeepCTR's PLE: one ``Dense`` stack per expert, one ``Dense``
softmax gate per task (and per shared gate), mixing with ``reduce_sum(experts * gate)``.
The fused version is :class:`ranking.layers.PLE` (experts of a level share one
``[E, d_in, d_out]`` kernel per layer, gates fused). Both get the same weights and are checked
to agree before timing.

    .venv/bin/python benchmarks/ple_fusion.py --steps 30

Prints the median wall and CPU time per step (forward + backward, gradients of all variables)
of each variant, examples/s, and the fused/naive and bf16/float32 ratios.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import ranking  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf  # noqa: E402

from ranking.layers import PLE  # noqa: E402


class NaivePLE(tf.keras.layers.Layer):
    """PLE with one Dense layer per expert layer and one Dense per gate (DeepCTR-style)."""

    def __init__(self, num_tasks, num_levels, shared_experts, task_experts, expert_units,
                 **kwargs):
        super().__init__(**kwargs)
        self.t, self.levels = num_tasks, num_levels
        self.ns, self.nt, self.units = shared_experts, task_experts, list(expert_units)
        e = num_tasks * task_experts + shared_experts
        self.experts = [[[tf.keras.layers.Dense(u, activation="relu") for u in self.units]
                         for _ in range(e)] for _ in range(num_levels)]
        self.task_gates = [[tf.keras.layers.Dense(task_experts + shared_experts, use_bias=False)
                            for _ in range(num_tasks)] for _ in range(num_levels)]
        self.shared_gates = [tf.keras.layers.Dense(e, use_bias=False)
                             for _ in range(num_levels - 1)]

    @staticmethod
    def _mlp(stack, x):
        for dense in stack:
            x = dense(x)
        return x

    @staticmethod
    def _mix(expert_outputs, gate_logits):
        gate = tf.nn.softmax(gate_logits, axis=-1)[..., tf.newaxis]  # [b, n, 1]
        return tf.reduce_sum(tf.stack(expert_outputs, axis=1) * gate, axis=1)

    def call(self, x):
        task_in, shared_in = [x] * self.t, x
        for level in range(self.levels):
            outs = []
            for k in range(self.t):
                for j in range(self.nt):
                    outs.append(self._mlp(self.experts[level][k * self.nt + j], task_in[k]))
            for j in range(self.ns):
                outs.append(self._mlp(self.experts[level][self.t * self.nt + j], shared_in))
            shared_outs = outs[self.t * self.nt:]
            new_task = [self._mix(outs[k * self.nt:(k + 1) * self.nt] + shared_outs,
                                  self.task_gates[level][k](task_in[k])) for k in range(self.t)]
            if level < self.levels - 1:
                shared_in = self._mix(outs, self.shared_gates[level](shared_in))
            task_in = new_task
        return task_in

    def copy_from(self, fused: PLE):
        """Takes the fused layer's weights (both must be built)."""
        for level in range(self.levels):
            pmlp = fused.experts[level]
            for e, stack in enumerate(self.experts[level]):
                for i, dense in enumerate(stack):
                    dense.set_weights([pmlp.kernels[i][e].numpy(), pmlp.biases[i][e].numpy()])
            for k, gate in enumerate(self.task_gates[level]):
                gate.set_weights([fused.task_gate_kernels[level][k].numpy()])
            if level < self.levels - 1:
                self.shared_gates[level].set_weights(
                    [fused.shared_gate_kernels[level].numpy()])


def make_step(layer, input_grad=True):
    """Forward + backward: gradients of all variables and, as in a model where the tower reads
    the embeddings, of the input."""
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outs = layer(x, training=True)
            loss = tf.add_n([tf.reduce_mean(tf.cast(o, tf.float32) ** 2) for o in outs])
        sources = layer.trainable_variables + ([x] if input_grad else [])
        return loss, tape.gradient(loss, sources)
    return step


def time_steps(steps, x, rounds, per_round, warmup):
    """Median wall and CPU (process) time per step of each step function.

    The variants take turns (``rounds`` rounds of ``per_round`` steps each) so that load from
    other processes on a shared machine hits all of them alike. CPU time counts every thread of
    this process: on an idle machine wall ~ CPU / cores, on a busy one CPU time is the steadier
    measure of the work done.
    """
    for step in steps.values():
        for _ in range(warmup):
            step(x)
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            step(x)[0].numpy()
            for _ in range(per_round):
                w0, c0 = time.perf_counter(), time.process_time()
                step(x)[0].numpy()
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
    return ({k: statistics.median(v) for k, v in wall.items()},
            {k: statistics.median(v) for k, v in cpu.items()})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=400)
    parser.add_argument("--units", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--shared-experts", type=int, default=2)
    parser.add_argument("--task-experts", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--rounds", type=int, default=5, help="variants take turns this often")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-input-grad", action="store_true",
                        help="skip the gradient w.r.t. the PLE input (default: computed, as "
                             "when the input is the embedding layer's output)")
    parser.add_argument("--policies", nargs="+", default=["float32", "mixed_bfloat16"])
    args = parser.parse_args(argv)

    intra = tf.config.threading.get_intra_op_parallelism_threads()
    print(f"TensorFlow {tf.__version__}, intra-op threads {intra} (0 = all "
          f"{os.cpu_count()} cpus); batch "
          f"{args.batch}, d={args.dim}, experts {args.units}, {args.levels} levels, "
          f"{args.shared_experts} shared + {args.task_experts} task experts, {args.tasks} tasks; "
          f"forward+backward (input gradient: {not args.no_input_grad}), median of "
          f"{args.steps} steps")
    x = tf.random.stateless_normal([args.batch, args.dim], seed=[1, 2])
    steps = {}
    original = tf.keras.mixed_precision.global_policy()
    try:
        for policy in args.policies:
            tf.keras.mixed_precision.set_global_policy(policy)
            tf.keras.utils.set_random_seed(0)
            fused = PLE(args.tasks, args.levels, args.shared_experts, args.task_experts,
                        args.units)
            naive = NaivePLE(args.tasks, args.levels, args.shared_experts, args.task_experts,
                             args.units)
            fused(x[:2]), naive(x[:2])
            naive.copy_from(fused)
            diff = max(float(tf.reduce_max(tf.abs(tf.cast(a, tf.float32)
                                                  - tf.cast(b, tf.float32))))
                       for a, b in zip(fused(x), naive(x)))
            print(f"{policy}: max |fused - naive| output difference {diff:.2e}")
            if diff > (1e-3 if policy == "float32" else 0.25):
                raise SystemExit(f"fused and naive PLE disagree under {policy}: {diff}")
            steps[("fused", policy)] = make_step(fused, not args.no_input_grad)
            steps[("naive", policy)] = make_step(naive, not args.no_input_grad)
            for step in (steps[("fused", policy)], steps[("naive", policy)]):
                step(x)  # trace under this policy
    finally:
        tf.keras.mixed_precision.set_global_policy(original)

    print(f"load average before: {os.getloadavg()[0]:.2f}")
    per_round = max(1, args.steps // args.rounds)
    wall, cpu = time_steps(steps, x, args.rounds, per_round, args.warmup)
    print(f"load average after:  {os.getloadavg()[0]:.2f}")
    for (name, policy) in steps:
        med = wall[(name, policy)]
        print(f"{name:6s} {policy:15s} median wall {med * 1e3:8.2f} ms/step "
              f"({args.batch / med:8.0f} examples/s)   median CPU {cpu[(name, policy)] * 1e3:8.2f}"
              f" ms/step")

    def ratios(label, times):
        print(f"ratios by {label} (> 1: the first is faster):")
        for policy in args.policies:
            print(f"  fused vs naive, {policy}: "
                  f"{times[('naive', policy)] / times[('fused', policy)]:.2f}x")
        if len(args.policies) == 2:
            a, b = args.policies
            for name in ("fused", "naive"):
                print(f"  {name} {b} vs {name} {a}: {times[(name, a)] / times[(name, b)]:.2f}x")
            print(f"  fused {b} vs naive {a}: {times[('naive', a)] / times[('fused', b)]:.2f}x")

    ratios("median wall time", wall)
    ratios("median CPU time", cpu)


if __name__ == "__main__":
    main()
