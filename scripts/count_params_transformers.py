# Independent parameter counts for tests/: transformers on the meta device (development only:
# pip install torch transformers). Usage: python3 scripts/count_params_transformers.py CONFIG.json...
# Prints sum(p.numel() for p in model.parameters()) of the class the config names; buffers
# (DeepSeek/GLM/MiniMax e_score_correction_bias) are not parameters there.
import json, sys, os, tempfile, torch, transformers
from transformers import AutoConfig, AutoModelForCausalLM
for f in sys.argv[1:]:
    d = json.load(open(f)); d.pop('_provenance', None); d.pop('quantization_config', None)
    with tempfile.TemporaryDirectory() as t:
        json.dump(d, open(os.path.join(t, 'config.json'), 'w'))
        try:
            cfg = AutoConfig.from_pretrained(t)
            arch = d['architectures'][0]
            cls = getattr(transformers, arch, None)
            with torch.device('meta'):
                m = cls(cfg) if cls else AutoModelForCausalLM.from_config(cfg)
            n = sum(p.numel() for p in m.parameters())
            vis = sum(p.numel() for name, p in m.named_parameters() if 'vision' in name or 'multi_modal_projector' in name)
            print(f"{os.path.basename(f):55s} {n:16,d} vision+proj {vis:,d}  ({arch})")
        except Exception as e:
            print(f"{os.path.basename(f):55s} ERROR {type(e).__name__}: {str(e)[:200]}")
