# Regenerates the Pillow reference images used by TestResizeMatchesPillow.
# Run with Debian's python3-pil (Pillow 9.4.0): /usr/bin/python3 make_refs.py
import random
from PIL import Image

random.seed(7)
W, H = 64, 48
src = Image.new("RGB", (W, H))
px = src.load()
for y in range(H):
    for x in range(W):
        # gradients plus noise plus a hard edge: exercises rounding and clipping
        n = random.randint(-40, 40)
        edge = 255 if (x // 8 + y // 8) % 2 else 0
        px[x, y] = (
            max(0, min(255, x * 4 + n)),
            max(0, min(255, y * 5 - n)),
            max(0, min(255, (edge + x * 2 + n) // 2)),
        )
src.save("resize_src.png")
for w, h in [(17, 13), (7, 5), (64, 20), (30, 48), (100, 70), (1, 1)]:
    Image.open("resize_src.png").convert("RGB").resize((w, h), Image.BILINEAR).save(
        "resize_%dx%d.png" % (w, h)
    )

# Tiny WebP inputs (x/image has no WebP encoder): a 16x12 RGBA image with a
# transparent left half, encoded lossless and lossy with Debian's cwebp.
import subprocess
im = Image.new("RGBA", (16, 12))
ip = im.load()
for y in range(12):
    for x in range(16):
        ip[x, y] = (200, 100, 50, 0 if x < 8 else 255)
im.save("/tmp/webp_src.png")
subprocess.run(["cwebp", "-quiet", "-lossless", "/tmp/webp_src.png", "-o", "lossless.webp"], check=True)
subprocess.run(["cwebp", "-quiet", "-q", "90", "/tmp/webp_src.png", "-o", "lossy.webp"], check=True)
