"""Training methods as registered descriptors: how a model is prepared, what trains, how it is
saved, merged and reloaded.

A ``Method`` answers the questions the loader, the trainer, the exporter and the comparison
ask (``method.prepare(model, ...)``, ``method.adapter``); nothing else compares method names.
To add one, subclass ``Method`` and ``register_method`` an instance (peft's
``register_peft_method`` in spirit): the config accepts its name, the panels offer it, and
training, saving and comparison follow.

- ``full``: every weight trains; saved whole.
- ``lora``: low-rank adapters (peft) on a frozen base; saved as the adapter, merged on export.
- ``qlora``: LoRA on a base loaded in 4-bit NF4 (bitsandbytes, double quantization), prepared
  with ``prepare_model_for_kbit_training``; paged 8-bit AdamW on CUDA; the adapter is
  evaluated on the 4-bit base, as trained, and merged into a full-precision reload.
"""

from __future__ import annotations

from typing import ClassVar

from .devices import bnb_config, compute_dtype
from .errors import ConfigError
from .registry import Registry

#: peft task type of each kind of model the tasks load.
PEFT_TASK_TYPES = {"causal-lm": "CAUSAL_LM", "classifier": "SEQ_CLS", "pooled-classifier": "FEATURE_EXTRACTION"}


class Method:
    """How a base model is adapted.

    Attributes:
        name: The name users write (``method: lora``).
        description: One line for choosers (panels, CLI help).
        adapter: Trains small added modules on a frozen base and saves only them; the base is
            reloaded from its recorded name, and exports merge the two.
        quantized: The base loads in 4-bit (needs bitsandbytes), placed on its device by loading.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    adapter: ClassVar[bool] = False
    quantized: ClassVar[bool] = False

    def load_kwargs(self, quant, device: str) -> dict:
        """Extra ``from_pretrained`` arguments for the base (``quant``: a ``QuantConfig``)."""
        return {}

    def prepare(self, model, kind: str, lora, gradient_checkpointing: bool = False):
        """The model to train, made from a freshly loaded base (``lora``: a ``LoraConfig``).

        ``kind`` is the task's kind of model (``causal-lm``, ``classifier``, ``pooled-classifier``);
        for a pooled classifier ``model`` is its encoder.
        """
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model

    def training_args(self, device: str) -> dict:
        """``TrainingArguments`` this method needs on ``device`` (precision, optimiser)."""
        import torch

        return {"bf16": device == "cuda" and torch.cuda.is_bf16_supported(), "optim": "adamw_torch"}

    def reload_quantized(self) -> bool:
        """Whether a saved model of this method is evaluated on a 4-bit base, as it was trained."""
        return self.quantized

    def __repr__(self) -> str:
        return f"<method {self.name}>"


#: Every known method by name, in registration order.
METHODS: Registry[Method] = Registry("method", lambda message, fix: ConfigError(f"{message} {fix}"))
#: Make a method known to the config, the panels, training, export and comparison.
register_method = METHODS.register
#: The descriptor of a method by name; an unknown name says which exist.
get_method = METHODS.lookup


class Full(Method):
    name = "full"
    description = "train every weight"


class Lora(Method):
    name = "lora"
    description = "low-rank adapters on a frozen base"
    adapter = True

    def peft_config(self, lora, kind: str):
        from peft import LoraConfig as PeftLora

        return PeftLora(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora.target_modules, modules_to_save=list(lora.modules_to_save) or None,
                        task_type=PEFT_TASK_TYPES[kind])

    def prepare(self, model, kind: str, lora, gradient_checkpointing: bool = False):
        from peft import get_peft_model

        model = super().prepare(model, kind, lora, gradient_checkpointing)
        return get_peft_model(model, self.peft_config(lora, kind))


class QLora(Lora):
    name = "qlora"
    description = "low-rank adapters on a 4-bit (NF4) base"
    quantized = True

    def load_kwargs(self, quant, device: str) -> dict:
        return {"quantization_config": bnb_config(quant, device), "device_map": {"": device},
                "dtype": compute_dtype(device, quant.compute_dtype)}

    def prepare(self, model, kind: str, lora, gradient_checkpointing: bool = False):
        from peft import get_peft_model, prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        return get_peft_model(model, self.peft_config(lora, kind))

    def training_args(self, device: str) -> dict:
        # The 4-bit base computes in its own dtype; paged 8-bit AdamW keeps optimiser spikes off the GPU.
        return {"bf16": False, "optim": "paged_adamw_8bit" if device == "cuda" else "adamw_torch"}


for _cls in (Full, Lora, QLora):
    register_method(_cls())
