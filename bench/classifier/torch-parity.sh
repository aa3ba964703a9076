#!/usr/bin/env bash
# A real exported model through eyeflow, against PyTorch itself: exports
# torchvision's densenet121(num_classes=15) (seeded random weights) with
# torch.onnx.export and a dynamic batch axis, classifies the golden JPEGs with
# `eyeflow predict` (eyeflow's decode, PIL-exact resize, normalisation in Go,
# ONNX Runtime) and with the training side's own transform
# (Resize((224,224)) -> ToTensor -> Normalize) in PyTorch, and prints both.
# Needs scripts/setup-bench.sh (python3-torch, python3-torchvision).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
golden="${1:-$root/../shared/golden}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && go build -o "$tmp/eyeflow" ./cmd/eyeflow)
"$tmp/eyeflow" model synth --arch densenet121 --out "$tmp/synth" >/dev/null
mkdir -p "$tmp/model"
cp "$tmp/synth/labels.json" "$tmp/model/"
cat > "$tmp/parity.py" <<'PY'
import glob, json, sys
import torch, torchvision
from PIL import Image
from torchvision import transforms
out, golden, mode = sys.argv[1], sys.argv[2], sys.argv[3]
torch.manual_seed(0)
m = torchvision.models.densenet121(weights=None, num_classes=15).eval()
if mode == "export":
    torch.onnx.export(m, torch.randn(1, 3, 224, 224), out + "/model.onnx", input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, opset_version=17)
    card = json.load(open(out + "/../synth/model.json"))
    card.update(name="densenet121-torch", version="1.0.0", description="torch.onnx.export of torchvision densenet121(num_classes=15)")
    json.dump(card, open(out + "/model.json", "w"), indent=2)
    sys.exit(0)
classes = json.load(open(out + "/labels.json"))
t = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
with torch.no_grad():
    for f in sorted(glob.glob(golden + "/*.jpg")):
        p = torch.softmax(m(t(Image.open(f).convert("RGB")).unsqueeze(0)), 1)[0]
        c, i = torch.max(p, 0)
        print(f"pytorch  {f.split('/')[-1]:32s} {classes[int(i)]:28s} {float(c):.4f}")
PY
/usr/bin/python3 "$tmp/parity.py" "$tmp/model" "$golden" export
"$tmp/eyeflow" predict --model "$tmp/model" "$golden"/*.jpg 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    print("eyeflow  %-32s %-28s %.4f" % (d["file"].split("/")[-1], d["predicted_class"], d["confidence"]))'
/usr/bin/python3 "$tmp/parity.py" "$tmp/model" "$golden" compare
