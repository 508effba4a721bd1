#!/usr/bin/env bash
# Every GPU check of the project in one prepared run (issues 3, 4, 6 and 15), for a session lent a GPU:
#
#     bash benchmarks/gpu_checks.sh [LOG]
#
# Run from the repository root, with essence importable (installed, or PYTHONPATH=.). Each check has
# its own time limit, so one that hangs (a slow torch.compile) does not take the others' results;
# the most wanted numbers come first. Prints everything, and tees it to LOG when given.
set -u
log="${1:-/dev/null}"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

{
echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'tf32 conv', torch.backends.cudnn.allow_tf32)"

echo "== StyleGAN2 golden (tiny64) on CUDA: max abs error against the reference's numbers"
timeout 60 $py - <<'EOF'
import json, torch
from safetensors import safe_open
from safetensors.torch import load_file
from essence.plugins.generators.stylegan2.checkpoints import complete, from_rosinality
from essence.plugins.generators.stylegan2.config import Architecture
from essence.plugins.generators.stylegan2.model import StyleGAN2Generator
path = "tests/fixtures/golden/stylegan2_tiny64_golden.safetensors"
with safe_open(path, "pt") as f:
    meta = f.metadata()
t = load_file(path)
arch = Architecture(size=int(meta["size"]), style_dim=int(meta["style_dim"]), n_mlp=int(meta["n_mlp"]),
                    channels={int(r): c for r, c in json.loads(meta["channels"]).items()})
ckpt = complete(from_rosinality({"g_ema": {k[6:]: v for k, v in t.items() if k.startswith("g_ema.")}}), "golden")
for tf32 in (True, False):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    g = StyleGAN2Generator(ckpt.arch, lr_mlp=float(meta["lr_mlp"])).requires_grad_(False).eval()
    g.load_state_dict(ckpt.state_dict, strict=True)
    g = g.cuda()
    with torch.no_grad():
        err = (g.synthesize(t["case.wplus.input"].cuda()).cpu() - t["case.wplus.image"]).abs().max().item()
    print(f"tf32 {tf32}: W+ case image max abs error {err:.2e}")
EOF

for precision in fp32 bf16; do
    echo "== engine step, FFHQ 1024 + ViT-B/32, N = 6, $precision"
    timeout 120 $py benchmarks/bench_engine.py --generator stylegan2-ffhq --gen-set weights=random \
        --encoder clip-vitb32 --enc-set weights=random --sources 6 --device cuda --steps 20 --warmup 3 \
        --precision "$precision"
done

for dtype in float32 bfloat16; do
    echo "== generator, $dtype"
    timeout 90 $py benchmarks/bench_generator.py --device cuda --dtype "$dtype" --sizes 256 1024 --batch 6 --repeat 5
done

echo "== GPU tests"
timeout 90 $py -m pytest -q -p no:cacheprovider -m gpu tests/test_clip_encoder.py

echo "== a whole run on CUDA (toy models)"
timeout 60 $py -m essence run -g toy-sprites -e toy-clip -t essence/plugins/toy/targets/in-domain.png \
    --device cuda --steps 100 --out "${TMPDIR:-/tmp}/essence-gpu-run" --overwrite --quiet && echo "run ok"

for pack in 2 4 8; do  # issue 15: directions per second with --pack K (K = 1 is the bf16 line above)
    echo "== engine step, FFHQ 1024 + ViT-B/32, N = 6, bf16, --pack $pack"
    timeout 120 $py benchmarks/bench_engine.py --generator stylegan2-ffhq --gen-set weights=random \
        --encoder clip-vitb32 --enc-set weights=random --sources 6 --device cuda --steps 10 --warmup 2 \
        --precision bf16 --pack "$pack"
done

echo "== engine step, FFHQ 1024 + ViT-B/32, N = 6, bf16 + torch.compile"
timeout 240 $py benchmarks/bench_engine.py --generator stylegan2-ffhq --gen-set weights=random \
    --encoder clip-vitb32 --enc-set weights=random --sources 6 --device cuda --steps 20 --warmup 3 \
    --precision bf16 --compile
echo "== done"
} 2>&1 | tee "$log"
