"""Supervised fine-tuning (LoRA or full) with packing, checkpoints and DDP."""
