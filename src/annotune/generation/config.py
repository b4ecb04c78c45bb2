"""Sampling settings of one request. Each field is documented once; that text feeds `--help` (chat, generate)
and the API's defaults alike."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Answers generated at once where every prompt is known up front and none waits on a person (`generate`,
# `evaluate`): wider than serving's batch (16, for each request's latency), as that is faster in all: the base
# model's 120 quickstart answers took 30 s at 64 against 46 s at 16 on a 2-core CPU (docs/benchmarks.md, Evaluate).
OFFLINE_BATCH = 64


class GenerationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(256, ge=1, description="Most tokens to generate for one answer.")
    temperature: float = Field(0.0, ge=0, le=10, description="Sampling temperature; 0 is greedy (deterministic).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: sample from the smallest set of tokens "
                                                       "whose probability adds up to this (with temperature > 0).")
    stop: list[str] = Field(default_factory=list, description="Strings that end the answer; never part of it.")
    seed: int | None = Field(None, description="Seed for sampling: the same seed and settings give the same answer.")

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("stop strings must not be empty")
        return value
