"""A user training script for soak's `command` workload: a tiny classifier that reports samples with progress().

It trains on the device soak names in SOAK_DEVICE (the CPU when run by hand) until soak stops it at the end of
the slot, or for `--steps` steps.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from soak.progress import progress

# Fast steps would flood soak with lines; reporting a few times a second is plenty for 1 s samples.
REPORT_EVERY_S = 0.2
LEARNING_RATE = 1e-2


def main() -> None:
    """Train until stopped (or for --steps), printing one progress line per report period and at the end."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps; 0: until stopped")
    args = parser.parse_args()

    device = torch.device(os.environ.get("SOAK_DEVICE", "cpu"))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).to(device)
    parameters = list(model.parameters())
    inputs = torch.randn(args.batch_size, 64, device=device)
    labels = torch.randint(0, 10, (args.batch_size,), device=device)

    step, unreported_samples, reported_s = 0, 0, time.monotonic()
    while args.steps == 0 or step < args.steps:
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        # Plain SGD by hand: torch.optim would pull in the compiler stack and add seconds to every start.
        gradients = torch.autograd.grad(loss, parameters)
        with torch.no_grad():
            for parameter, gradient in zip(parameters, gradients, strict=True):
                parameter.sub_(LEARNING_RATE * gradient)
        step += 1
        unreported_samples += args.batch_size
        if time.monotonic() - reported_s >= REPORT_EVERY_S or step == args.steps:
            # Checked only when reporting: .item() waits for the device, which every step should not.
            if not torch.isfinite(loss):
                raise SystemExit(f"loss became {loss.item()} at step {step}")
            progress(work=unreported_samples, unit="samples/s")
            unreported_samples, reported_s = 0, time.monotonic()


if __name__ == "__main__":
    main()
