"""A tiny random Qwen2 saved by transformers, with the logits transformers computes for it: the
fixture of the architecture added to show that adding one is a file and a registry line
(Docs/ARCHITECTURE.md). Run from this folder in a venv with torch, transformers 5.24, safetensors:

    python make_qwen2_fixture.py qwen2-tiny

Every parameter is random (biases and norm weights included), so a missing q/k/v bias or a bias
on the output projection changes the logits. Seeded: byte-identical on re-runs on one machine."""
import json, os, sys

import torch
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

out = sys.argv[1]
torch.manual_seed(20261202)
config = Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=128, rope_theta=1000000.0, rms_norm_eps=1e-6,
                     tie_word_embeddings=False, use_sliding_window=False, bos_token_id=1, eos_token_id=2,
                     attn_implementation="eager", torch_dtype="float32")
model = Qwen2ForCausalLM(config).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.copy_(1 + 0.1 * torch.randn_like(p))
        else:
            p.copy_(0.08 * torch.randn_like(p))
model.save_pretrained(out, safe_serialization=True)
ids = torch.tensor([[1, 17, 300, 42, 5, 511, 128, 64, 2, 9, 77, 250]], dtype=torch.long)
with torch.no_grad():
    logits = model(ids).logits[0].float().contiguous()
save_file({"input_ids.0": ids[0].to(torch.int32).contiguous(), "logits.0": logits}, os.path.join(out, "reference.safetensors"))
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump({"input_ids": ids[0].tolist(), "versions": {"torch": torch.__version__,
               "transformers": __import__("transformers").__version__}}, f, indent=1)
print(f"wrote {out}: logits {tuple(logits.shape)}")
