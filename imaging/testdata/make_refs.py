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

# --- Colour parity golden pairs (issue 16 item 3) ---------------------------
# A small synthetic fundus (300x200): black surround, an orange-red disc with a
# radial gradient, a near-white optic disc, dark vessels and flat patches of
# black, white, (200,80,40), pure green and pure blue (the colours whose
# YCbCr conversion was off). Smooth on purpose, so the references stay small.
import math


def fundus(w, h):
    im = Image.new("RGB", (w, h))
    p = im.load()
    cx, cy, r = w * 0.5, h * 0.5, min(w, h) * 0.45
    for y in range(h):
        for x in range(w):
            d = math.hypot(x - cx, y - cy) / r
            if d > 1:
                c = (0, 0, 0)
            else:
                t = 1 - 0.45 * d * d
                c = (int(200 * t + 20), int(80 * t + 5), int(40 * t))
                od = math.hypot(x - cx - r * 0.45, y - cy + r * 0.1)
                if od < r * 0.2:
                    c = (250, 230, 170) if od > r * 0.08 else (255, 255, 255)
                for k in range(3):  # vessels: three sine curves
                    vy = cy + (k - 1) * r * 0.45 + math.sin(x / (17.0 + 5 * k)) * r * 0.15
                    if abs(y - vy) < 1.6 + 0.4 * k:
                        c = (110, 20, 15)
            p[x, y] = c
    patches = [(0, 0, 0), (255, 255, 255), (200, 80, 40), (0, 255, 0), (0, 0, 255)]
    s = max(4, h // 12)
    for i, c in enumerate(patches):
        for y in range(s):
            for x in range(i * s, (i + 1) * s):
                p[x, y] = c
                p[w - 1 - x, h - 1 - y] = c
    return im


def ref224(src, dst):
    Image.open(src).convert("RGB").resize((224, 224), Image.BILINEAR).save(dst, optimize=True)


def with_alpha(im):
    # Transparent left third (its colour kept), half-transparent middle,
    # opaque right third, and a diagonal alpha ramp across the bottom rows.
    w, h = im.size
    rgba = im.convert("RGBA")
    p = rgba.load()
    for y in range(h):
        for x in range(w):
            a = 0 if x < w // 3 else (128 if x < 2 * w // 3 else 255)
            if y >= h * 3 // 4:
                a = (x * 255 // (w - 1) + y) % 256
            r, g, b, _ = p[x, y]
            p[x, y] = (r, g, b, a)
    return rgba


src = fundus(300, 200)
src.save("/tmp/fundus.png")
subprocess.run(["cwebp", "-quiet", "-q", "90", "/tmp/fundus.png", "-o", "fundus_q90.webp"], check=True)
ref224("fundus_q90.webp", "fundus_q90.224.png")

with_alpha(src).save("alpha.png", optimize=True)
ref224("alpha.png", "alpha.224.png")
subprocess.run(["cwebp", "-quiet", "-q", "90", "alpha.png", "-o", "alpha_q90.webp"], check=True)
ref224("alpha_q90.webp", "alpha_q90.224.png")

# Exact references at the native size (no resize): odd sizes exercise the
# chroma upsampling's edge cases (last column and row without a pair).
odd = fundus(37, 23)
odd.save("/tmp/odd.png")
subprocess.run(["cwebp", "-quiet", "-q", "75", "/tmp/odd.png", "-o", "odd_q75.webp"], check=True)
Image.open("odd_q75.webp").convert("RGB").save("odd_q75.rgb.png")
with_alpha(fundus(38, 24)).save("/tmp/odd_alpha.png")
subprocess.run(["cwebp", "-quiet", "-q", "75", "/tmp/odd_alpha.png", "-o", "even_alpha_q75.webp"], check=True)
Image.open("even_alpha_q75.webp").convert("RGB").save("even_alpha_q75.rgb.png")
