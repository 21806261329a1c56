"""What made a result layer (``ResultMetadata``): the prompt of its batch item as resolved,
the prediction it ran as, the sampling parameters, LoRAs and controls (docs/protocol.md,
"Result metadata")."""

from __future__ import annotations

from typing import Any

from backend.engine.prediction import from_scheduler_config
from backend.engine.prompt_syntax import PromptPlan, item_record
from backend.engine.types import GenerationRequest, ResultMetadata


def prediction_overrides(request: GenerationRequest) -> dict[str, Any]:
    """The scheduler keys a style's prediction override sets (none without one)."""
    return {} if request.prediction is None else {"prediction_type": request.prediction}


def prompts_index(request: GenerationRequest, seed: int) -> int:
    """The batch item a result seed belongs to."""
    return min(max(0, seed - request.seed), max(0, request.batch - 1))


def result_metadata(
    request: GenerationRequest, loaded: Any, seed: int, strength: float, prompts: PromptPlan
) -> ResultMetadata:
    """The metadata of the result with ``seed`` of ``request`` run on ``loaded`` (a
    LoadedModel: its name and its base pipeline's scheduler config are read)."""
    # The prediction the job ran as: every sampler is built from this config.
    config = {**loaded.pipe.scheduler.config, **prediction_overrides(request)}
    prediction = from_scheduler_config(config)
    item = prompts_index(request, seed)
    resolved = {**request.resolved, **item_record(prompts, item)}
    resolved["prompt_typed"] = request.prompt
    resolved["negative_prompt_typed"] = request.negative_prompt
    return ResultMetadata(
        style=request.style,
        resolved=resolved,
        prompt=prompts.prompts[item],
        negative_prompt=prompts.negatives[item],
        seed=seed,
        model=loaded.name,
        prediction_type=prediction.type,
        zero_terminal_snr=prediction.zero_terminal_snr,
        sampler=request.sampler,
        steps=request.steps,
        cfg_scale=request.cfg_scale,
        strength=strength,
        mode=request.mode,
        width=request.width,
        height=request.height,
        clip_skip=request.clip_skip,
        loras=[{"name": lora.name, "weight": lora.weight} for lora in request.loras],
        controls=[
            {
                "type": c.type,
                "model": c.model,
                "strength": c.strength,
                "start": c.start,
                "end": c.end,
            }
            for c in request.controls
        ],
    )
