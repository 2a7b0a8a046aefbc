#!/usr/bin/env python
"""Train the class-conditional diffusion model of notebook 04 (same as the `configkd_train_diffusion` console script).

Example (the command that made configkd/assets/diffusion_digits16): python scripts/train_diffusion.py --out diffusion_digits16
"""
from configkd.diffusion import train_diffusion_cli

if __name__ == '__main__': train_diffusion_cli()
