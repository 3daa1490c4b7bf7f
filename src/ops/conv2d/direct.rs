//! The CPU path's direct convolution in f32 on x86-64 with AVX2 and FMA: no im2col matrix, and
//! register-tiled kernels that run near the FMA units' peak.
//!
//! - Forward: the input is copied once into a zero-padded [`Layout`] in which every vector of
//!   output pixels meets its input, at each kernel tap, as one contiguous load; each kernel call
//!   keeps a tile of NO output channels × NV vectors of output pixels in registers and walks
//!   IC·KH·KW, each step one load per pixel vector and one broadcast weight per channel. Weights
//!   are packed once per call, NO channels side by side.
//! - Input gradient (dilation 1): the same kernel, as forward convolutions of the padded output
//!   gradient with the flipped, transposed weight: one with stride 1 (such a transposed
//!   convolution is a convolution), else one per sub-pixel phase (the input positions ≡ (a, b)
//!   modulo the stride receive the taps ≡ (a + PH, b + PW), a stride-1 convolution each, computed
//!   dense and then interleaved where the column stride is not 1). Dilated geometries take it from
//!   im2col + GEMM.
//! - Weight gradient: an outer-product kernel: for each output pixel, NOV vectors of 8 output
//!   channels (the gradient transposed to pixel-major; on AVX-512 two of them to a 16-lane
//!   register where there are more than 8 channels) times NK scalars of the padded input
//!   (k = (ic, kh, kw) at fixed offsets from the pixel), accumulated over a chunk of images; chunks'
//!   sums are added in chunk order, so the result does not depend on the thread count. Layers of
//!   at most 16 channels (on AVX-512, unit column stride, even rows) go over pixel pairs instead:
//!   a register holds 8 channels × a pair's 2 pixels, times the pair's two inputs at k broadcast
//!   as one 64-bit value.
//!
//! Two builds of each kernel are picked at run time: AVX-512 (32 vector registers: larger tiles;
//! 16-lane vectors) and AVX2. Elsewhere Conv2d uses im2col + GEMM.

// Off x86_64 no build of these kernels exists and isa() finds none: the planning code is unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::Geometry;
use crate::ops::interface::Epilogue;
use rayon::prelude::*;

/// Which build of the kernels this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
}

/// The kernels this CPU can run, detected once, no further than `WGRAD_CPU_ISA` allows (as
/// oneDNN's `ONEDNN_MAX_CPU_ISA`): `avx512` (the default), `avx2`, or `none` for im2col + GEMM
/// everywhere; so that a machine with AVX-512 can test and time what CPUs without it run.
pub fn isa() -> Option<Isa> {
    static ISA: std::sync::OnceLock<Option<Isa>> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        // Device::select refuses a bad value before anything runs; a library caller that skips it
        // is told here, once.
        let cap = cap_from_env().unwrap_or_else(|e| {
            eprintln!("wgrad: {e}; using what the CPU has");
            Some(Isa::Avx512)
        });
        // The lesser of the cap and what the CPU has.
        cap.and_then(|cap| detected().map(|found| if found == Isa::Avx512 { cap } else { found }))
    })
}

/// WGRAD_CPU_ISA's cap: Some(Avx512) (no cap) when unset, None for `none`.
pub fn cap_from_env() -> crate::Result<Option<Isa>> {
    let Ok(v) = std::env::var("WGRAD_CPU_ISA") else { return Ok(Some(Isa::Avx512)) };
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "avx512" => Ok(Some(Isa::Avx512)),
        "avx2" => Ok(Some(Isa::Avx2)),
        "none" => Ok(None),
        _ => Err(crate::Error::Device(format!("WGRAD_CPU_ISA={v:?}: expected avx512, avx2 or none"))),
    }
}

/// The best kernels this CPU has.
fn detected() -> Option<Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
            return Some(Isa::Avx512);
        }
        if avx2 {
            return Some(Isa::Avx2);
        }
    }
    None
}

/// Every build this CPU can run, for tests: AVX-512 machines test the AVX2 build too.
#[cfg(test)]
pub(super) fn builds() -> Vec<Isa> {
    match isa() {
        Some(Isa::Avx512) => vec![Isa::Avx512, Isa::Avx2],
        Some(Isa::Avx2) => vec![Isa::Avx2],
        None => Vec::new(),
    }
}

fn unit(g: &Geometry) -> bool {
    g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1
}

/// The kernels that compute this convolution's forward directly, if any: every geometry with unit
/// stride and dilation; strided or dilated ones where output rows have at least 4 pixels (narrower
/// ones would leave most vector lanes idle, and im2col + GEMM does better).
pub fn forward_applies(g: &Geometry) -> Option<Isa> {
    isa().filter(|_| unit(g) || g.ow >= 4)
}

/// The kernels that compute this convolution's input gradient directly, if any: every geometry
/// with dilation 1 (any stride and padding), phase by phase ([`Phase`]), but strided 1×1 ones:
/// their one phase is a plain GEMM that im2col + GEMM does as fast or faster (ResNet's 1×1
/// stride-2 downsample, 64 channels at 8×8: 0.27 against 0.44 ms).
pub fn input_gradient_applies(g: &Geometry) -> Option<Isa> {
    isa().filter(|_| g.dh == 1 && g.dw == 1 && (g.kh * g.kw > 1 || (g.sh == 1 && g.sw == 1)))
}

/// The kernels that compute this convolution's weight gradient directly: every geometry.
pub fn weight_gradient_applies(_g: &Geometry) -> Option<Isa> {
    isa()
}

/// Vector width in f32 lanes (the weight gradient's, and AVX2's forward).
const V: usize = 8;

/// Output channels per forward tile (weights are packed in groups of this many).
const fn tile_channels(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 8,
        Isa::Avx2 => 6,
    }
}

/// Where the forward kernels find their input: the image copied once, zero-padded, into planes of
/// `hp` rows of `wp` floats, in which output vector `v` meets the input of kernel tap (kh, kw) at
/// `offset(v) + kh·DH·wp + tap(kw)`, contiguous for all its lanes.
///
/// - A row holds SW column phases of `seg` floats each, phase p column i being padded column
///   i·SW + p: a strided tap reads consecutive floats of one phase. With stride 1 a row is the
///   padded row, long enough for whole vectors, and a tap is a shift.
/// - On AVX-512 a vector holds 16 output pixels, or, where rows have at most 8, two rows of 8:
///   its upper half reads the padded row SH further down (`pair`).
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Output pixels per vector: 16 (one AVX-512 register) on AVX-512, else 8.
    lanes: usize,
    /// Two output rows of up to 8 pixels per vector.
    paired: bool,
    hp: usize,
    /// Floats per column phase of a row.
    seg: usize,
    /// Floats per row: SW phases.
    wp: usize,
    /// Output row length rounded up to whole vectors (paired: 8).
    owr: usize,
}

impl Layout {
    fn of(isa: Isa, g: &Geometry) -> Layout {
        let lanes = match isa {
            Isa::Avx512 => 2 * V,
            Isa::Avx2 => V,
        };
        let paired = isa == Isa::Avx512 && g.ow <= V;
        let owr = if paired { V } else { g.ow.div_ceil(lanes) * lanes };
        let seg = owr + (g.kw - 1) * g.dw / g.sw;
        // The padded image's rows, and where paired with an odd number of output rows, those the
        // last vector's idle upper half reads.
        let rows = if paired { (2 * g.oh.div_ceil(2) - 1) * g.sh + (g.kh - 1) * g.dh + 1 } else { 0 };
        Layout { lanes, paired, hp: (g.h + 2 * g.ph).max(rows), seg, wp: g.sw * seg, owr }
    }
    fn plane(&self) -> usize {
        self.hp * self.wp
    }
    fn image(&self, g: &Geometry) -> usize {
        g.ic * self.plane()
    }
    /// What the kernels need to walk it.
    fn walk(&self, g: &Geometry) -> Walk {
        Walk { plane: self.plane(), khs: g.dh * self.wp, seg: self.seg, sw: g.sw, dw: g.dw, pair: g.sh * self.wp }
    }
    /// Vectors per image plane of the output.
    fn vectors(&self, g: &Geometry) -> usize {
        match self.paired {
            true => g.oh.div_ceil(2),
            false => g.oh * self.owr / self.lanes,
        }
    }
    /// Where vector v's input starts at tap (0, 0).
    fn offset(&self, g: &Geometry, v: usize) -> usize {
        let vpr = self.owr / self.lanes;
        match self.paired {
            true => 2 * v * g.sh * self.wp,
            false => (v / vpr) * g.sh * self.wp + (v % vpr) * self.lanes,
        }
    }
    /// Where vector v's lanes go in an output plane: up to two runs of (offset of the first
    /// pixel in `d`, first lane, count).
    fn runs(&self, g: &Geometry, d: Dest, v: usize) -> [(usize, usize, usize); 2] {
        match self.paired {
            true => {
                let second = if 2 * v + 1 < g.oh { g.ow } else { 0 };
                [(d.at(2 * v, 0), 0, g.ow), (d.at(2 * v + 1, 0), V, second)]
            }
            false => {
                let vpr = self.owr / self.lanes;
                let (r, c) = (v / vpr, v % vpr * self.lanes);
                [(d.at(r, c), 0, self.lanes.min(g.ow - c)), (0, 0, 0)]
            }
        }
    }
    /// Copies x (N, IC, H, W) into this layout (zeros around).
    fn fill(&self, g: &Geometry, x: &[f32], xp: &mut [f32]) {
        let (hw, img, plane) = (g.h * g.w, self.image(g), self.plane());
        // A kernel one row high reads every SH-th row only, one column wide phase 0 only (a 1×1
        // stride-2 convolution a quarter of its input): the others are left as they are.
        let row_step = if g.kh == 1 { g.sh } else { 1 };
        let phases = if g.kw == 1 { 1 } else { g.sw };
        // Phase p's float i is input column i·SW + p - PW: those inside the image are i0..i1,
        // from column `first` on.
        let span = |p: usize| {
            let shift = p as isize - g.pw as isize;
            let i0 = ((-shift).max(0) as usize).div_ceil(g.sw).min(self.seg);
            let i1 = ((g.w as isize - shift).max(0) as usize).div_ceil(g.sw).clamp(i0, self.seg);
            (i0, i1, ((i0 * g.sw) as isize + shift).max(0) as usize)
        };
        xp[..g.n * img].par_chunks_mut(img).enumerate().for_each(|(n, dst)| {
            for c in 0..g.ic {
                let src = &x[(n * g.ic + c) * hw..][..hw];
                let dst = &mut dst[c * plane..][..plane];
                if g.sw == 2 {
                    // Stride 2 (ResNet's downsampling): each row's column pairs split in one pass.
                    for (q, row) in dst.chunks_exact_mut(self.wp).enumerate().step_by(row_step) {
                        let row = &mut row[..phases * self.seg];
                        row.fill(0.0);
                        if let Some(r) = q.checked_sub(g.ph).filter(|&r| r < g.h) {
                            split_pairs(&src[r * g.w..][..g.w], g.pw, self.seg, row);
                        }
                    }
                    continue;
                }
                for p in 0..phases {
                    let (i0, i1, first) = span(p);
                    for (q, row) in dst.chunks_exact_mut(self.wp).enumerate().step_by(row_step) {
                        let d = &mut row[p * self.seg..][..self.seg];
                        let r = q.wrapping_sub(g.ph);
                        if r >= g.h {
                            d.fill(0.0);
                            continue;
                        }
                        let s = &src[r * g.w..][..g.w];
                        d[..i0].fill(0.0);
                        match g.sw {
                            _ if i1 == i0 => {}
                            1 => d[i0..i1].copy_from_slice(&s[first..][..i1 - i0]),
                            sw => d[i0..i1].iter_mut().zip(s[first..].iter().step_by(sw)).for_each(|(v, &a)| *v = a),
                        }
                        d[i1..].fill(0.0);
                    }
                }
            }
        });
    }
}

/// Stride 2's column phases of one row: padded column i·2 + p (input column i·2 + p − `pw`) to
/// phase p's float i, for the phases `row` holds (`seg` floats each; one: phase 0 only); `row`
/// zero beforehand. Columns past a segment are never read.
fn split_pairs(s: &[f32], pw: usize, seg: usize, row: &mut [f32]) {
    // Input column 2j + t lands in phase (t + pw) % 2 at float j + (t + pw) / 2.
    let (p0, p1) = row.split_at_mut(seg.min(row.len()));
    let (even, odd): (&mut [f32], &mut [f32]) = if pw.is_multiple_of(2) { (p0, p1) } else { (p1, p0) };
    let even = even.get_mut(pw / 2..).unwrap_or_default();
    let odd = odd.get_mut(pw.div_ceil(2)..).unwrap_or_default();
    let pairs = s.len() / 2;
    // Whole pairs where both segments (or the one, where the row holds phase 0 only) take them;
    // else element by element, as far as each segment reaches.
    match (even.len() >= pairs, odd.len() >= pairs, odd.is_empty()) {
        (true, true, _) => {
            for ((e, o), p) in even.iter_mut().zip(odd.iter_mut()).zip(s.chunks_exact(2)) {
                *e = p[0];
                *o = p[1];
            }
        }
        (true, false, true) => even.iter_mut().zip(s.chunks_exact(2)).for_each(|(e, p)| *e = p[0]),
        _ => {
            even.iter_mut().zip(s.iter().step_by(2)).for_each(|(e, &v)| *e = v);
            odd.iter_mut().zip(s[1..].iter().step_by(2)).for_each(|(o, &v)| *o = v);
            return;
        }
    }
    if s.len() % 2 == 1 {
        if let Some(e) = even.get_mut(pairs) {
            *e = s[s.len() - 1];
        }
    }
}

fn packed_weights(g: &Geometry, isa: Isa) -> usize {
    let no = tile_channels(isa);
    g.oc.div_ceil(no) * no * g.k()
}

/// Scratch words of the forward: the batch in its layout and the packed weights.
pub fn forward_scratch(isa: Isa, g: &Geometry) -> Vec<u64> {
    vec![(g.n * Layout::of(isa, g).image(g)) as u64, packed_weights(g, isa) as u64]
}

/// Copies x (N, IC, H, W) into planes of `hp` rows of `wp` floats, the image at (PH, PW), zeros
/// around.
fn pad(g: &Geometry, hp: usize, wp: usize, x: &[f32], xp: &mut [f32]) {
    let (hw, plane) = (g.h * g.w, hp * wp);
    let img = g.ic * plane;
    xp[..g.n * img].par_chunks_mut(img).enumerate().for_each(|(n, dst)| {
        dst.fill(0.0);
        for c in 0..g.ic {
            let src = &x[(n * g.ic + c) * hw..][..hw];
            let plane = &mut dst[c * plane..][..plane];
            for (h, row) in src.chunks_exact(g.w).enumerate() {
                plane[(h + g.ph) * wp + g.pw..][..g.w].copy_from_slice(row);
            }
        }
    });
}

/// Packs w(o, i, kh, kw) as [oc block][ic][kh][kw][NO], zero beyond the last channel.
fn pack(g: &Geometry, no: usize, w: impl Fn(usize, usize, usize, usize) -> f32, out: &mut [f32]) {
    let k = g.k();
    for (b, blk) in out[..g.oc.div_ceil(no) * no * k].chunks_exact_mut(no * k).enumerate() {
        let mut at = 0;
        for i in 0..g.ic {
            for kh in 0..g.kh {
                for kw in 0..g.kw {
                    for o in 0..no {
                        let oc = b * no + o;
                        blk[at] = if oc < g.oc { w(oc, i, kh, kw) } else { 0.0 };
                        at += 1;
                    }
                }
            }
        }
    }
}

/// out (N, OC, OH, OW), overwritten, from x (N, IC, H, W), weight (OC, IC, KH, KW) and bias, with
/// the epilogue applied as the tiles are stored.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    isa: Isa,
    g: &Geometry,
    out: &mut [f32],
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    ep: &Epilogue<'_>,
    scratch: &mut [&mut [f32]],
) {
    let l = Layout::of(isa, g);
    let [xp, wp] = scratch else { panic!("conv2d direct forward: expected 2 scratch buffers") };
    l.fill(g, x, xp);
    let (k, kk) = (g.k(), g.kh * g.kw);
    let no = tile_channels(isa);
    pack(g, no, |o, i, kh, kw| weight[o * k + i * kk + kh * g.kw + kw], wp);
    convolve(isa, g, l, out, xp, wp, bias, ep);
}

/// One phase of the input gradient along one dimension (kernel K, padding P, stride S, input
/// length `len`): the input positions S·i + a (i < n) receive Σ over t < taps of
/// dout[i + t - pad] · w[S·(taps-1-t) + r], a stride-1 correlation of the output gradient with
/// the taps ≡ r (mod S), flipped. With stride 1 the one phase is the whole transposed convolution
/// (taps = K, pad = K-1-P). `pad` is negative where the phase starts past dout's first value.
#[derive(Clone, Copy, Debug)]
struct Phase {
    a: usize,
    n: usize,
    taps: usize,
    r: usize,
    pad: isize,
}

impl Phase {
    /// Phase a (< S, < len) of a dimension.
    fn of(k: usize, p: usize, s: usize, len: usize, a: usize) -> Phase {
        let r = (a + p) % s;
        let taps = if r < k { (k - r).div_ceil(s) } else { 0 };
        Phase { a, n: (len - a).div_ceil(s), taps, r, pad: taps as isize - 1 - ((a + p) / s) as isize }
    }
    /// Where the phase's first tap of its first output lies in a buffer padded by `lead`.
    fn origin(&self, lead: usize) -> usize {
        (lead as isize - self.pad) as usize
    }
}

/// The row phases and column phases of a geometry's input gradient.
fn row_phases(g: &Geometry) -> impl Iterator<Item = Phase> + '_ {
    (0..g.sh.min(g.h)).map(|a| Phase::of(g.kh, g.ph, g.sh, g.h, a))
}

fn col_phases(g: &Geometry) -> impl Iterator<Item = Phase> + '_ {
    (0..g.sw.min(g.w)).map(|b| Phase::of(g.kw, g.pw, g.sw, g.w, b))
}

/// The (row, column) phases that receive any taps, row-major.
fn phase_pairs(g: &Geometry) -> impl Iterator<Item = (Phase, Phase)> + '_ {
    row_phases(g)
        .flat_map(move |pa| col_phases(g).map(move |pb| (pa, pb)))
        .filter(|(pa, pb)| pa.taps > 0 && pb.taps > 0)
}

/// A phase as a forward convolution: dout's channels in, the input's out, its taps as the kernel
/// (the padding is the shared layout's).
fn phase_geometry(g: &Geometry, pa: Phase, pb: Phase) -> Geometry {
    Geometry {
        n: g.n,
        ic: g.oc,
        h: g.oh,
        w: g.ow,
        oc: g.ic,
        oh: pa.n,
        ow: pb.n,
        kh: pa.taps,
        kw: pb.taps,
        sh: 1,
        sw: 1,
        ph: 0,
        pw: 0,
        dh: 1,
        dw: 1,
    }
}

/// The output gradient's layout that every phase reads, at its own origin: zero-padded by the
/// largest pad above and to the left, and far enough below and to the right for every phase's
/// vectors; with `fill`'s geometry (dout as an image padded by those leads).
fn gradient_layout(isa: Isa, g: &Geometry) -> (Geometry, Layout, usize, usize) {
    let top = row_phases(g).filter(|p| p.taps > 0).map(|p| p.pad.max(0) as usize).max().unwrap_or(0);
    let left = col_phases(g).filter(|p| p.taps > 0).map(|p| p.pad.max(0) as usize).max().unwrap_or(0);
    let (mut hp, mut seg) = (top + g.oh, left + g.ow);
    let mut lanes = V;
    for (pa, pb) in phase_pairs(g) {
        let l = Layout::of(isa, &phase_geometry(g, pa, pb));
        lanes = l.lanes;
        let rows = if l.paired { 2 * pa.n.div_ceil(2) } else { pa.n };
        hp = hp.max(pa.origin(top) + rows + pa.taps - 1);
        seg = seg.max(pb.origin(left) + l.owr + pb.taps - 1);
    }
    let carrier = Geometry {
        ic: g.oc,
        h: g.oh,
        w: g.ow,
        ph: top,
        pw: left,
        ..phase_geometry(g, row_phases(g).next().unwrap(), col_phases(g).next().unwrap())
    };
    (carrier, Layout { lanes, paired: false, hp, seg, wp: seg, owr: seg }, top, left)
}

/// The input gradient dinp (N, IC, H, W), overwritten, from dout and weight: phase by phase (one
/// with stride 1), each a forward convolution over the shared layout of dout with its taps of the
/// flipped, transposed weight, each writing its own rows and columns of the input gradient.
pub fn backward_input(
    isa: Isa,
    g: &Geometry,
    dinp: &mut [f32],
    dout: &[f32],
    weight: &[f32],
    scratch: &mut [&mut [f32]],
) {
    let (carrier, shared, top, left) = gradient_layout(isa, g);
    // With a column stride, a third buffer holds each image's phases computed dense.
    let (dp, wp, dense) = match scratch {
        [dp, wp] if g.sw == 1 => (dp, wp, None),
        [dp, wp, dense] if g.sw > 1 => (dp, wp, Some(dense)),
        _ => panic!("conv2d direct input gradient: expected {} scratch buffers", 2 + usize::from(g.sw > 1)),
    };
    shared.fill(&carrier, dout, dp);
    let (k, kk, no) = (g.k(), g.kh * g.kw, tile_channels(isa));
    let mut at = 0;
    for (pa, pb) in phase_pairs(g) {
        let t = phase_geometry(g, pa, pb);
        // w'(ic, oc, th, tw) = w(oc, ic, S·(taps-1-th) + r, …)
        let tap = |th: usize, tw: usize| (g.sh * (pa.taps - 1 - th) + pa.r) * g.kw + g.sw * (pb.taps - 1 - tw) + pb.r;
        pack(&t, no, |i, o, th, tw| weight[o * k + i * kk + tap(th, tw)], &mut wp[at..]);
        at += packed_weights(&t, isa);
    }
    let (dp, wp) = (&*dp, &*wp);
    let (hw, img) = (g.h * g.w, shared.image(&carrier));
    let silent = phase_pairs(g).count() < g.sh.min(g.h) * g.sw.min(g.w);
    let image_of = |n: usize, dimg: &mut [f32], dense: Option<&mut [f32]>| {
        if silent {
            // Positions no tap reaches (a 2×2 kernel's, with stride 3) have zero gradient.
            dimg.fill(0.0);
        }
        // Phase (pa, pb) into `out` at `d`.
        let run = |pa: Phase, pb: Phase, at: usize, d: Dest, out: &mut [f32]| {
            let t = phase_geometry(g, pa, pb);
            let l = Layout { hp: shared.hp, seg: shared.seg, wp: shared.wp, ..Layout::of(isa, &t) };
            let x = &dp[n * img + pa.origin(top) * shared.wp + pb.origin(left)..(n + 1) * img];
            // The kernels read through pointers: the last float the last vector reads is inside.
            let reach = l.offset(&t, l.vectors(&t) - 1) + (t.kh - 1) * l.wp + t.kw - 1
                + if l.paired { l.wp + V } else { l.lanes };
            debug_assert!((t.ic - 1) * l.plane() + reach <= x.len(), "{g:?} phase {pa:?} {pb:?} reads past its layout");
            image(isa, &t, l, d, out, x, &wp[at..], None, &Epilogue::default());
        };
        let mut at = 0;
        let Some(dense) = dense else {
            for (pa, pb) in phase_pairs(g) {
                // Phase pixel (i, j) is input pixel (S·i + a, j).
                run(pa, pb, at, Dest { plane: hw, origin: pa.a * g.w, row: g.sh * g.w, col: 1 }, dimg);
                at += packed_weights(&phase_geometry(g, pa, pb), isa);
            }
            return;
        };
        // With a column stride, each phase's pixels are every SW-th of a row: the phases are
        // computed dense, with whole-vector stores (scalar stores SW apart cost l2.0.conv1 of
        // ResNet-20 a third of its time), then interleaved.
        let mut off = 0;
        for (pa, pb) in phase_pairs(g) {
            let t = phase_geometry(g, pa, pb);
            run(pa, pb, at, Dest::dense(&t), &mut dense[off..]);
            at += packed_weights(&t, isa);
            off += g.ic * pa.n * pb.n;
        }
        interleave(g, dense, dimg);
    };
    let dinp = dinp[..g.n * g.ic * hw].par_chunks_mut(g.ic * hw).enumerate();
    match dense {
        Some(d) => dinp
            .zip(d[..g.n * g.ic * hw].par_chunks_mut(g.ic * hw))
            .for_each(|((n, dimg), dense)| image_of(n, dimg, Some(dense))),
        None => dinp.for_each(|(n, dimg)| image_of(n, dimg, None)),
    }
}

/// The input gradient's image from its phases computed dense ([`phase_pairs`]' order, each
/// (IC, rows, columns)): phase pixel (i, j) to input pixel (S·i + a, S·j + b).
fn interleave(g: &Geometry, dense: &[f32], dimg: &mut [f32]) {
    let hw = g.h * g.w;
    let cols = || col_phases(g).filter(|p| p.taps > 0);
    let mut off = 0;
    for pa in row_phases(g).filter(|p| p.taps > 0) {
        let block = |pb: Phase| g.ic * pa.n * pb.n;
        let dst_row = |c: usize, i: usize| (c * hw + (g.sh * i + pa.a) * g.w, g.w);
        match (g.sw, cols().count()) {
            // Stride 2 with both column phases: each row from one pass over its column pairs.
            (2, 2) => {
                let (n0, n1) = (g.w.div_ceil(2), g.w / 2);
                let (p0, p1) = dense[off..].split_at(g.ic * pa.n * n0);
                for c in 0..g.ic {
                    for i in 0..pa.n {
                        let (at, len) = dst_row(c, i);
                        let dst = &mut dimg[at..][..len];
                        let s0 = &p0[(c * pa.n + i) * n0..][..n0];
                        let s1 = &p1[(c * pa.n + i) * n1..][..n1];
                        for ((d, &a), &b) in dst.chunks_exact_mut(2).zip(s0).zip(s1) {
                            d[0] = a;
                            d[1] = b;
                        }
                        if g.w % 2 == 1 {
                            dst[g.w - 1] = s0[n0 - 1];
                        }
                    }
                }
                off += g.ic * pa.n * g.w;
            }
            _ => {
                for pb in cols() {
                    let src = &dense[off..][..block(pb)];
                    for c in 0..g.ic {
                        for i in 0..pa.n {
                            let (at, len) = dst_row(c, i);
                            let row = &src[(c * pa.n + i) * pb.n..][..pb.n];
                            dimg[at..][..len][pb.a..].iter_mut().step_by(g.sw).zip(row).for_each(|(d, &v)| *d = v);
                        }
                    }
                    off += block(pb);
                }
            }
        }
    }
}

/// Scratch words of the input gradient: the output gradient in its layout, every phase's packed
/// weights and, with a column stride, the phases computed dense (the input gradient's size).
pub fn backward_input_scratch(isa: Isa, g: &Geometry) -> Vec<u64> {
    let (carrier, shared, _, _) = gradient_layout(isa, g);
    let packed: usize = phase_pairs(g).map(|(pa, pb)| packed_weights(&phase_geometry(g, pa, pb), isa)).sum();
    let mut words = vec![(g.n * shared.image(&carrier)) as u64, packed as u64];
    if g.sw > 1 {
        words.push((g.n * g.ic * g.h * g.w) as u64);
    }
    words
}

/// One image of a convolution over the laid-out input and packed weights, by the build `isa`
/// names.
#[allow(clippy::too_many_arguments)]
fn image(
    isa: Isa,
    g: &Geometry,
    l: Layout,
    d: Dest,
    out: &mut [f32],
    x: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    ep: &Epilogue<'_>,
) {
    // SAFETY: isa() saw the features these builds use (it finds none off x86_64).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match (isa, l.paired) {
            (Isa::Avx512, false) => image_avx512(g, l, d, out, x, wp, bias, ep),
            (Isa::Avx512, true) => image_avx512_paired(g, l, d, out, x, wp, bias, ep),
            (Isa::Avx2, _) => image_avx2(g, l, d, out, x, wp, bias, ep),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "direct convolution without x86_64 kernels ({isa:?}, {g:?}, {l:?}, {d:?}, {}, {}, {ep:?})",
        out.len() + x.len() + wp.len(),
        bias.is_some()
    );
}

/// The convolution proper, over the laid-out input and packed weights, in parallel over images.
#[allow(clippy::too_many_arguments)]
fn convolve(
    isa: Isa,
    g: &Geometry,
    l: Layout,
    out: &mut [f32],
    xp: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    ep: &Epilogue<'_>,
) {
    let (ohw, img) = (g.oh * g.ow, l.image(g));
    out.par_chunks_mut(g.oc * ohw)
        .enumerate()
        .for_each(|(n, out)| image(isa, g, l, Dest::dense(g), out, &xp[n * img..][..img], wp, bias, ep));
}

/// One image: every (channel block, vector block) tile.
/// Built once per vector type: `$lanes` f32 lanes in a `$vec`, with its intrinsics.
macro_rules! image_fn {
    ($name:ident, $features:literal, $no:literal, $nv:literal, $lanes:literal, $vec:ident, $setzero:ident,
     $set1:ident, $load:ident, $fmadd:ident, $max:ident, $storeu:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            g: &Geometry,
            l: Layout,
            d: Dest,
            out: &mut [f32],
            x: &[f32],
            wp: &[f32],
            bias: Option<&[f32]>,
            ep: &Epilogue<'_>,
        ) {
            use std::arch::x86_64::*;
            const NO: usize = $no;
            const NV: usize = $nv;
            const L: usize = $lanes;
            debug_assert_eq!(l.lanes, L);
            let k = g.k();
            let nvec = l.vectors(g);
            let walk = l.walk(g);
            let xptr = x.as_ptr();
            for b in 0..g.oc.div_ceil(NO) {
                let w = &wp[b * NO * k..][..NO * k];
                let mut init = [0f32; NO];
                for (o, v) in init.iter_mut().enumerate() {
                    let oc = b * NO + o;
                    *v = match bias {
                        Some(bs) if oc < g.oc => bs[oc],
                        _ => 0.0,
                    };
                }
                let mut v0 = 0;
                while v0 < nvec {
                    let nv = NV.min(nvec - v0);
                    let (mut offs, mut runs) = ([0usize; NV], [[(0, 0, 0); 2]; NV]);
                    for j in 0..nv {
                        offs[j] = l.offset(g, v0 + j);
                        runs[j] = l.runs(g, d, v0 + j);
                    }
                    let mut acc = [[$setzero(); NV]; NO];
                    match nv {
                        NV => tile::<NO, NV>(xptr, &offs, g, walk, w.as_ptr(), &init, &mut acc),
                        _ => tile_tail::<NO, NV>(nv, xptr, &offs, g, walk, w.as_ptr(), &init, &mut acc),
                    }
                    // Store the tile through the epilogue: whole vectors straight, others run by
                    // run.
                    for o in 0..NO.min(g.oc - b * NO) {
                        let plane = &mut out[(b * NO + o) * d.plane..];
                        let affine = ep.affine.map(|(s, t)| ($set1(s[b * NO + o]), $set1(t[b * NO + o])));
                        for j in 0..nv {
                            let mut v = acc[o][j];
                            if let Some((s, t)) = affine {
                                v = $fmadd(v, s, t);
                            }
                            if ep.relu {
                                // max(0, v): v where v is NaN, as ReLU.
                                v = $max($setzero(), v);
                            }
                            match runs[j] {
                                [(at, 0, L), (_, _, 0)] if d.col == 1 => $storeu(plane[at..][..L].as_mut_ptr(), v),
                                runs => {
                                    let mut lanes = [0f32; L];
                                    $storeu(lanes.as_mut_ptr(), v);
                                    for (at, first, count) in runs.into_iter().filter(|r| r.2 > 0) {
                                        match d.col {
                                            1 => plane[at..][..count].copy_from_slice(&lanes[first..][..count]),
                                            col => plane[at..]
                                                .iter_mut()
                                                .step_by(col)
                                                .zip(&lanes[first..][..count])
                                                .for_each(|(o, &v)| *o = v),
                                        }
                                    }
                                }
                            }
                        }
                    }
                    v0 += nv;
                }
            }

            /// NO channels × NV vectors: Σ over (ic, kh, kw) of weight × input.
            #[inline(always)]
            unsafe fn tile<const NO: usize, const NV: usize>(
                x: *const f32,
                offs: &[usize; NV],
                g: &Geometry,
                walk: Walk,
                w: *const f32,
                init: &[f32; NO],
                acc: &mut [[$vec; NV]; NO],
            ) {
                let mut a = [[$setzero(); NV]; NO];
                for o in 0..NO {
                    for v in 0..NV {
                        a[o][v] = $set1(init[o]);
                    }
                }
                let mut wptr = w;
                for c in 0..g.ic {
                    let cbase = x.add(c * walk.plane);
                    for kh in 0..g.kh {
                        let row = cbase.add(kh * walk.khs);
                        // Tap kw reads column phase kw·DW mod SW, shifted by kw·DW / SW.
                        let (mut phase, mut shift) = (0, 0);
                        for _ in 0..g.kw {
                            let at = row.add(phase * walk.seg + shift);
                            let mut xv = [$setzero(); NV];
                            for v in 0..NV {
                                xv[v] = $load(at.add(offs[v]), walk.pair);
                            }
                            for o in 0..NO {
                                let wv = $set1(*wptr.add(o));
                                for v in 0..NV {
                                    a[o][v] = $fmadd(wv, xv[v], a[o][v]);
                                }
                            }
                            wptr = wptr.add(NO);
                            phase += walk.dw;
                            while phase >= walk.sw {
                                phase -= walk.sw;
                                shift += 1;
                            }
                        }
                    }
                }
                *acc = a;
            }

            /// The last, partial vector block: the same sums, one vector at a time.
            #[allow(clippy::too_many_arguments)]
            #[inline(always)]
            unsafe fn tile_tail<const NO: usize, const NV: usize>(
                nv: usize,
                x: *const f32,
                offs: &[usize; NV],
                g: &Geometry,
                walk: Walk,
                w: *const f32,
                init: &[f32; NO],
                acc: &mut [[$vec; NV]; NO],
            ) {
                for j in 0..nv {
                    let mut one = [[$setzero(); 1]; NO];
                    tile::<NO, 1>(x, &[offs[j]], g, walk, w, init, &mut one);
                    for o in 0..NO {
                        acc[o][j] = one[o][0];
                    }
                }
            }
        }
    };
}

/// Where a convolution's output pixel (r, c) of channel o goes: `o·plane + origin + r·row +
/// c·col` (the input gradient's strided phases write every SH-th row and SW-th column).
#[derive(Clone, Copy, Debug)]
struct Dest {
    plane: usize,
    origin: usize,
    row: usize,
    col: usize,
}

impl Dest {
    /// Planes of OH rows of OW pixels.
    fn dense(g: &Geometry) -> Dest {
        Dest { plane: g.oh * g.ow, origin: 0, row: g.ow, col: 1 }
    }
    fn at(&self, r: usize, c: usize) -> usize {
        self.origin + r * self.row + c * self.col
    }
}

/// What the forward tile needs of a [`Layout`]: the plane size and the taps' strides.
#[derive(Clone, Copy)]
struct Walk {
    plane: usize,
    /// Offset of the next kernel row.
    khs: usize,
    /// A row's column phases: `sw` of `seg` floats.
    seg: usize,
    sw: usize,
    /// Dilation across columns.
    dw: usize,
    /// Offset of a paired vector's upper half.
    pair: usize,
}

/// A vector of 16 consecutive floats (the pair offset unused).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[inline]
unsafe fn load_x16(p: *const f32, _pair: usize) -> std::arch::x86_64::__m512 {
    std::arch::x86_64::_mm512_loadu_ps(p)
}

/// Two rows of 8: floats p..p+8 in the lower half, p+pair..p+pair+8 in the upper.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[inline]
unsafe fn load_pair(p: *const f32, pair: usize) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let lo = _mm512_castps256_ps512(_mm256_loadu_ps(p));
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), _mm256_castps_pd(_mm256_loadu_ps(p.add(pair)))))
}

/// A vector of 8 consecutive floats (the pair offset unused).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load_x8(p: *const f32, _pair: usize) -> std::arch::x86_64::__m256 {
    std::arch::x86_64::_mm256_loadu_ps(p)
}

image_fn!(
    image_avx512,
    "avx2,fma,avx512f,avx512vl",
    8,
    3,
    16,
    __m512,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    load_x16,
    _mm512_fmadd_ps,
    _mm512_max_ps,
    _mm512_storeu_ps
);
image_fn!(
    image_avx512_paired,
    "avx2,fma,avx512f,avx512vl",
    8,
    3,
    16,
    __m512,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    load_pair,
    _mm512_fmadd_ps,
    _mm512_max_ps,
    _mm512_storeu_ps
);
image_fn!(
    image_avx2,
    "avx2,fma",
    6,
    2,
    8,
    __m256,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    load_x8,
    _mm256_fmadd_ps,
    _mm256_max_ps,
    _mm256_storeu_ps
);

/// Images per weight-gradient chunk: each chunk's sum is formed apart and the chunks are added in
/// order (fixed, not the thread count, so results are the same bits on any machine).
const CHUNK: usize = 8;

/// Whether the weight gradient runs over pixel pairs ([`dw_avx512_pairs`]): on AVX-512, for at
/// most 16 output channels (which fill a 16-lane register only with two pixels), unit column
/// stride and even output rows (a pair's inputs are adjacent floats).
fn dw_pairs(isa: Isa, g: &Geometry) -> bool {
    isa == Isa::Avx512 && g.oc <= 2 * V && g.sw == 1 && g.ow.is_multiple_of(2)
}

/// Floats a weight-gradient part keeps per (channel, k): the pair kernel's two pixels apart.
fn dw_lanes(isa: Isa, g: &Geometry) -> usize {
    if dw_pairs(isa, g) {
        2
    } else {
        1
    }
}

/// Channel vectors (of 8) per weight-gradient tile, and k values per tile, for this geometry. On
/// AVX-512, tiles of more than 8 channels are held in 16-lane registers, two 8-channel vectors in
/// each; pixel pairs hold one 8-channel vector × 2 pixels per register.
fn dw_tile(isa: Isa, g: &Geometry) -> (usize, usize) {
    match isa {
        Isa::Avx512 if dw_pairs(isa, g) && g.oc > V => (2, 12),
        Isa::Avx512 if dw_pairs(isa, g) => (1, 24),
        Isa::Avx512 if g.oc > 2 * V => (4, 12),
        Isa::Avx512 if g.oc > V => (2, 24),
        Isa::Avx512 => (1, 24),
        Isa::Avx2 if g.oc > V => (2, 6),
        Isa::Avx2 => (1, 12),
    }
}

/// Output channels rounded up to whole tiles.
fn dw_channels(isa: Isa, g: &Geometry) -> usize {
    let (nov, _) = dw_tile(isa, g);
    g.oc.div_ceil(nov * V) * nov * V
}

/// K rounded up to whole tiles.
fn dw_k(isa: Isa, g: &Geometry) -> usize {
    let (_, nk) = dw_tile(isa, g);
    g.k().div_ceil(nk) * nk
}

/// The zero-padded input of the weight gradient: per channel `hp` rows of `wp` floats.
#[derive(Clone, Copy, Debug)]
struct Padded {
    hp: usize,
    wp: usize,
}

impl Padded {
    fn of(g: &Geometry) -> Padded {
        Padded { hp: g.h + 2 * g.ph, wp: g.w + 2 * g.pw }
    }
    fn plane(&self) -> usize {
        self.hp * self.wp
    }
    fn image(&self, g: &Geometry) -> usize {
        g.ic * self.plane()
    }
    /// The offsets of k0..k0+NK (k = (ic, kh, kw)) from a pixel's position in the padded input;
    /// past the last k it is repeated (its sums are computed and never read).
    fn offsets<const NK: usize>(&self, g: &Geometry, k0: usize) -> [usize; NK] {
        let last = g.k() - 1;
        std::array::from_fn(|j| {
            let kk = (k0 + j).min(last);
            let (ic, r) = (kk / (g.kh * g.kw), kk % (g.kh * g.kw));
            ic * self.plane() + (r / g.kw) * g.dh * self.wp + r % g.kw * g.dw
        })
    }
}

/// Scratch words of the weight gradient: the padded input, the transposed output gradient and
/// each chunk's sums.
pub fn backward_weight_scratch(isa: Isa, g: &Geometry) -> Vec<u64> {
    let p = Padded::of(g);
    let ocp = dw_channels(isa, g);
    let part = ocp * dw_k(isa, g) * dw_lanes(isa, g);
    vec![(g.n * p.image(g)) as u64, (g.n * g.oh * g.ow * ocp) as u64, (g.n.div_ceil(CHUNK) * part) as u64]
}

/// The weight gradient dweight (OC, IC, KH, KW), overwritten, from dout and x.
pub fn backward_weight(
    isa: Isa,
    g: &Geometry,
    dweight: &mut [f32],
    dout: &[f32],
    x: &[f32],
    scratch: &mut [&mut [f32]],
) {
    let p = Padded::of(g);
    let [xp, dyt, parts] = scratch else { panic!("conv2d direct weight gradient: expected 3 scratch buffers") };
    pad(g, p.hp, p.wp, x, xp);
    let (ohw, k, ocp) = (g.oh * g.ow, g.k(), dw_channels(isa, g));
    let (pairs, lanes) = (dw_pairs(isa, g), dw_lanes(isa, g));
    // dout (N, OC, OH·OW) → (N, OH·OW, OCP), zero beyond OC; for pixel pairs (N, OH·OW/2, OCP, 2).
    dyt[..g.n * ohw * ocp].par_chunks_mut(ohw * ocp).enumerate().for_each(|(n, t)| {
        let src = &dout[n * g.oc * ohw..][..g.oc * ohw];
        // SAFETY: isa() saw AVX2, and AVX-512 where there are pairs (it finds nothing off x86_64).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            transpose(g.oc, ohw, ocp, src, t);
            if pairs {
                interleave_pairs(ocp, ohw, t);
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("direct convolution without x86_64 kernels ({}, {})", src.len(), t.len());
    });
    let chunks = g.n.div_ceil(CHUNK);
    let (xp, dyt) = (&*xp, &*dyt);
    let (nov, nk) = dw_tile(isa, g);
    let kp = dw_k(isa, g);
    let part_len = ocp * kp * lanes;
    parts[..chunks * part_len].par_chunks_mut(part_len).enumerate().for_each(|(c, part)| {
        let images = c * CHUNK..(c * CHUNK + CHUNK).min(g.n);
        part.fill(0.0);
        // SAFETY: isa() saw the features these builds use.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match (isa, nov) {
                (Isa::Avx512, 2) if pairs => dw_avx512_pairs::<2, 12>(g, p, images, xp, dyt, part),
                (Isa::Avx512, 1) if pairs => dw_avx512_pairs::<1, 24>(g, p, images, xp, dyt, part),
                (Isa::Avx512, 4) => dw_avx512_4(g, p, images, xp, dyt, ocp, part),
                (Isa::Avx512, 2) => dw_avx512_2(g, p, images, xp, dyt, ocp, part),
                (Isa::Avx512, _) => dw_avx512_1(g, p, images, xp, dyt, ocp, part),
                (Isa::Avx2, 2) => dw_avx2_2(g, p, images, xp, dyt, ocp, part),
                (Isa::Avx2, _) => dw_avx2_1(g, p, images, xp, dyt, ocp, part),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "direct convolution without x86_64 kernels ({isa:?}, {nov}, {p:?}, {images:?}, {}, {})",
            xp.len() + dyt.len(),
            ocp
        );
    });
    // A part holds tile by tile: [k group][channel vector][k in group][lane] (a lane being a
    // channel, or for pixel pairs a channel's two pixels). The chunks are added in order into the
    // gradient (OC, K).
    let at = |oc: usize, kk: usize| ((((kk / nk) * (ocp / V) + oc / V) * nk + kk % nk) * V + oc % V) * lanes;
    let lane_sum = |i: usize| if pairs { parts[i] + parts[i + 1] } else { parts[i] };
    dweight[..g.oc * k].par_chunks_mut(k).enumerate().for_each(|(oc, row)| {
        for (kk, d) in row.iter_mut().enumerate() {
            let i = at(oc, kk);
            let mut sum = lane_sum(i);
            for c in 1..chunks {
                sum += lane_sum(c * part_len + i);
            }
            *d = sum;
        }
    });
}

/// t (P, OCP) = src (OC, P)ᵀ, zero beyond OC: 8 × 8 blocks transposed in registers, the edges
/// element by element.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose(oc: usize, px: usize, ocp: usize, src: &[f32], t: &mut [f32]) {
    use std::arch::x86_64::*;
    let (oc8, px8) = (oc / V * V, px / V * V);
    for o0 in (0..oc8).step_by(V) {
        for p0 in (0..px8).step_by(V) {
            let r = |i: usize| _mm256_loadu_ps(src.as_ptr().add((o0 + i) * px + p0));
            let (r0, r1, r2, r3, r4, r5, r6, r7) = (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7));
            let t0 = _mm256_unpacklo_ps(r0, r1);
            let t1 = _mm256_unpackhi_ps(r0, r1);
            let t2 = _mm256_unpacklo_ps(r2, r3);
            let t3 = _mm256_unpackhi_ps(r2, r3);
            let t4 = _mm256_unpacklo_ps(r4, r5);
            let t5 = _mm256_unpackhi_ps(r4, r5);
            let t6 = _mm256_unpacklo_ps(r6, r7);
            let t7 = _mm256_unpackhi_ps(r6, r7);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (i, v) in out.iter().enumerate() {
                _mm256_storeu_ps(t.as_mut_ptr().add((p0 + i) * ocp + o0), *v);
            }
        }
        for p in px8..px {
            for o in o0..o0 + V {
                t[p * ocp + o] = src[o * px + p];
            }
        }
    }
    for p in 0..px {
        for o in oc8..ocp {
            t[p * ocp + o] = if o < oc { src[o * px + p] } else { 0.0 };
        }
    }
}

/// t (P, OCP), transposed pixel-major, → (P/2, OCP, 2) in place: each pixel pair's two rows of
/// OCP (8 or 16) channels interleaved, channel by channel.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn interleave_pairs(ocp: usize, px: usize, t: &mut [f32]) {
    use std::arch::x86_64::*;
    let t = &mut t[..px * ocp];
    match ocp {
        8 => {
            let idx = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
            for q in t.chunks_exact_mut(16) {
                _mm512_storeu_ps(q.as_mut_ptr(), _mm512_permutexvar_ps(idx, _mm512_loadu_ps(q.as_ptr())));
            }
        }
        _ => {
            debug_assert_eq!(ocp, 16);
            let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            for q in t.chunks_exact_mut(32) {
                let (a, b) = (_mm512_loadu_ps(q.as_ptr()), _mm512_loadu_ps(q.as_ptr().add(16)));
                _mm512_storeu_ps(q.as_mut_ptr(), _mm512_permutex2var_ps(a, lo, b));
                _mm512_storeu_ps(q.as_mut_ptr().add(16), _mm512_permutex2var_ps(a, hi, b));
            }
        }
    }
}

/// The weight gradient of one chunk of images over pixel pairs (see [`dw_pairs`]): NR registers of
/// 8 channels × a pair's 2 pixels (lane 2c + e) times NK 64-bit broadcasts of the pair's two
/// inputs at k, so each broadcast feeds NR FMAs of 16 useful lanes (the per-channel kernels' 16
/// channels would feed one). The two pixels' sums stay apart in `part` ([k group][NR][NK][16]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[allow(clippy::needless_range_loop)]
unsafe fn dw_avx512_pairs<const NR: usize, const NK: usize>(
    g: &Geometry,
    p: Padded,
    images: std::ops::Range<usize>,
    xp: &[f32],
    dyt: &[f32],
    part: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (k, ohw, img, ocp) = (g.k(), g.oh * g.ow, p.image(g), NR * V);
    let rows = (256 / g.ow.max(1)).clamp(1, g.oh);
    for n in images {
        let x = xp.as_ptr().add(n * img);
        let d = dyt.as_ptr().add(n * ohw * ocp);
        for r0 in (0..g.oh).step_by(rows) {
            let r1 = (r0 + rows).min(g.oh);
            for k0 in (0..k).step_by(NK) {
                let offs: [usize; NK] = p.offsets(g, k0);
                let tile = part.as_mut_ptr().add((k0 / NK) * NR * NK * 2 * V);
                let mut acc = [[_mm512_setzero_ps(); NK]; NR];
                for v in 0..NR {
                    for j in 0..NK {
                        acc[v][j] = _mm512_loadu_ps(tile.add((v * NK + j) * 2 * V));
                    }
                }
                for oh in r0..r1 {
                    // As in dw_fn: one pointer per k along the row, indexed by the pixel alone.
                    let row = x.add(oh * g.sh * p.wp);
                    let src: [*const f32; NK] = std::array::from_fn(|j| row.add(offs[j]));
                    let mut dp = d.add(oh * g.ow * ocp);
                    for ow in (0..g.ow).step_by(2) {
                        let mut dv = [_mm512_setzero_ps(); NR];
                        for v in 0..NR {
                            dv[v] = _mm512_loadu_ps(dp.add(v * 2 * V));
                        }
                        for j in 0..NK {
                            let pair = (src[j].add(ow) as *const f64).read_unaligned();
                            let xv = _mm512_castpd_ps(_mm512_set1_pd(pair));
                            for v in 0..NR {
                                acc[v][j] = _mm512_fmadd_ps(dv[v], xv, acc[v][j]);
                            }
                        }
                        dp = dp.add(2 * ocp);
                    }
                }
                for v in 0..NR {
                    for j in 0..NK {
                        _mm512_storeu_ps(tile.add((v * NK + j) * 2 * V), acc[v][j]);
                    }
                }
            }
        }
    }
}

/// One chunk of images: part += Σ over their pixels of dyt[pixel] ⊗ x at the k offsets, tile by
/// tile ([k group][channel vector][k in group][lane]). Built once per register type: `$reg` holds
/// `$per` of the tile's 8-channel vectors (the channels are adjacent in dyt), read from and written
/// back to their places in `part` by `$load` and `$store`.
macro_rules! dw_fn {
    ($name:ident, $features:literal, $nov:literal, $nk:literal, $reg:ident, $per:literal, $setzero:ident,
     $loadu:ident, $set1:ident, $fmadd:ident, $load:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            g: &Geometry,
            p: Padded,
            images: std::ops::Range<usize>,
            xp: &[f32],
            dyt: &[f32],
            ocp: usize,
            part: &mut [f32],
        ) {
            use std::arch::x86_64::*;
            const NOV: usize = $nov;
            const NK: usize = $nk;
            // Registers per tile, each `$per` channel vectors.
            const NR: usize = NOV / $per;
            let (k, ohw, img) = (g.k(), g.oh * g.ow, p.image(g));
            let ovs = ocp / V;
            // Output rows per block: about 256 pixels, whose transposed gradient stays in L1
            // while every tile passes over them.
            let rows = (256 / g.ow.max(1)).clamp(1, g.oh);
            for n in images {
                let x = xp.as_ptr().add(n * img);
                let d = dyt.as_ptr().add(n * ohw * ocp);
                for r0 in (0..g.oh).step_by(rows) {
                    let r1 = (r0 + rows).min(g.oh);
                    for k0 in (0..k).step_by(NK) {
                        let offs: [usize; NK] = p.offsets(g, k0);
                        for ov in (0..ovs).step_by(NOV) {
                            let base_tile = part.as_mut_ptr().add(((k0 / NK) * ovs + ov) * NK * V);
                            let tile = |v: usize| base_tile.add(v * NK * V);
                            let mut acc = [[$setzero(); NK]; NR];
                            for v in 0..NR {
                                for j in 0..NK {
                                    acc[v][j] = $load(|i| tile(v * $per + i).add(j * V));
                                }
                            }
                            for oh in r0..r1 {
                                // Each k's input along this output row, and the row's gradient:
                                // one pointer each, indexed by the pixel alone (two-term
                                // addresses keep the loop's pointers in registers).
                                let row = x.add(oh * g.sh * p.wp);
                                let src: [*const f32; NK] = std::array::from_fn(|j| row.add(offs[j]));
                                let mut dp = d.add(oh * g.ow * ocp + ov * V);
                                for ow in 0..g.ow {
                                    let i = ow * g.sw;
                                    let mut dv = [$setzero(); NR];
                                    for v in 0..NR {
                                        dv[v] = $loadu(dp.add(v * $per * V));
                                    }
                                    for j in 0..NK {
                                        let xv = $set1(*src[j].add(i));
                                        for v in 0..NR {
                                            acc[v][j] = $fmadd(dv[v], xv, acc[v][j]);
                                        }
                                    }
                                    dp = dp.add(ocp);
                                }
                            }
                            for v in 0..NR {
                                for j in 0..NK {
                                    $store(acc[v][j], |i| tile(v * $per + i).add(j * V));
                                }
                            }
                        }
                    }
                }
            }
        }
    };
}

/// An 8-lane vector of a weight-gradient tile, read from its place (`at(0)`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load8(at: impl Fn(usize) -> *mut f32) -> std::arch::x86_64::__m256 {
    std::arch::x86_64::_mm256_loadu_ps(at(0))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store8(v: std::arch::x86_64::__m256, at: impl Fn(usize) -> *mut f32) {
    std::arch::x86_64::_mm256_storeu_ps(at(0), v)
}

/// Two 8-lane vectors of a weight-gradient tile, read from their places (`at(0)`, `at(1)`) into one
/// 16-lane register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[inline]
unsafe fn load16(at: impl Fn(usize) -> *mut f32) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let lo = _mm512_castps256_ps512(_mm256_loadu_ps(at(0)));
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), _mm256_castps_pd(_mm256_loadu_ps(at(1)))))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[inline]
unsafe fn store16(v: std::arch::x86_64::__m512, at: impl Fn(usize) -> *mut f32) {
    use std::arch::x86_64::*;
    _mm256_storeu_ps(at(0), _mm512_castps512_ps256(v));
    _mm256_storeu_ps(at(1), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))));
}

dw_fn!(
    dw_avx512_4,
    "avx2,fma,avx512f,avx512vl",
    4,
    12,
    __m512,
    2,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    load16,
    store16
);
dw_fn!(
    dw_avx512_2,
    "avx2,fma,avx512f,avx512vl",
    2,
    24,
    __m512,
    2,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    load16,
    store16
);
dw_fn!(
    dw_avx512_1,
    "avx2,fma,avx512f,avx512vl",
    1,
    24,
    __m256,
    1,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    load8,
    store8
);
dw_fn!(
    dw_avx2_2,
    "avx2,fma",
    2,
    6,
    __m256,
    1,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    load8,
    store8
);
dw_fn!(
    dw_avx2_1,
    "avx2,fma",
    1,
    12,
    __m256,
    1,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    load8,
    store8
);

#[cfg(test)]
mod tests {
    use super::super::{reference, Conv2d};
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    fn buffers(words: &[u64]) -> Vec<Vec<f32>> {
        words.iter().map(|&w| vec![f32::NAN; w as usize]).collect()
    }

    fn close(what: &str, got: &[f32], want: &[f64]) -> std::result::Result<(), TestCaseError> {
        let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            prop_assert!((a as f64 - b).abs() <= 2e-5 * scale, "{what}[{i}] = {a}, want {b} (scale {scale})");
        }
        Ok(())
    }

    /// Forward, input and weight gradients of one geometry against the definition in f64
    /// ([`reference`]), for each build
    /// this CPU runs, with scratch full of NaN. The input gradient where it applies (unit stride
    /// and dilation, padding below the kernel); the forward and the weight gradient everywhere.
    fn check(cfg: Conv2d, input: [usize; 4], seed: u64) -> std::result::Result<(), TestCaseError> {
        let Ok(g) = cfg.geometry(&input) else { return Ok(()) };
        let (n, ic, h, w, oc) = (g.n, g.ic, g.h, g.w, g.oc);
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut u = |len: usize| (0..len).map(|_| r.random_range(-1.0f32..1.0)).collect::<Vec<f32>>();
        let (x, wt, b) = (u(n * ic * h * w), u(oc * g.k()), u(oc));
        let dout = u(n * oc * g.oh * g.ow);
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let want = reference::forward(&g, &f64s(&x), &f64s(&wt), Some(&f64s(&b)));
        let (dx64, dw64, _) = reference::backward(&g, &f64s(&dout), &f64s(&x), &f64s(&wt));
        for isa in builds() {
            let mut out = vec![f32::NAN; dout.len()];
            let mut s = buffers(&forward_scratch(isa, &g));
            forward(
                isa,
                &g,
                &mut out,
                &x,
                &wt,
                Some(&b),
                &Epilogue::default(),
                &mut s.iter_mut().map(|v| v.as_mut_slice()).collect::<Vec<_>>(),
            );
            close(&format!("{isa:?} forward {g:?}"), &out, &want)?;
            if input_gradient_applies(&g).is_some() {
                let mut dx = vec![f32::NAN; x.len()];
                let mut s = buffers(&backward_input_scratch(isa, &g));
                backward_input(
                    isa,
                    &g,
                    &mut dx,
                    &dout,
                    &wt,
                    &mut s.iter_mut().map(|v| v.as_mut_slice()).collect::<Vec<_>>(),
                );
                close(&format!("{isa:?} input gradient {g:?}"), &dx, &dx64)?;
            }
            let mut dw = vec![f32::NAN; wt.len()];
            let mut s = buffers(&backward_weight_scratch(isa, &g));
            backward_weight(
                isa,
                &g,
                &mut dw,
                &dout,
                &x,
                &mut s.iter_mut().map(|v| v.as_mut_slice()).collect::<Vec<_>>(),
            );
            close(&format!("{isa:?} weight gradient {g:?}"), &dw, &dw64)?;
        }
        Ok(())
    }

    /// The layouts and tiles every CNN here meets, named: 16-pixel vectors with a partial last
    /// one, two 8-pixel rows per vector (an odd number of rows, and rows shorter than 8), strided
    /// and dilated gathers, 1×1 stride-2 (ResNet's downsample), and channel counts that fill the
    /// weight gradient's 4-vector tile with a partial last vector; input gradients of strides 2
    /// and 3 whose phases have different taps, a phase that starts past the output gradient's
    /// first row (padding 2 of a 3×3 kernel), and positions no tap reaches; the weight gradient
    /// over pixel pairs with one register of channels (6, and a row stride) and two (16).
    /// Stride 2 with an odd padding: the odd columns' segment (phase 0, from float 1) is one float
    /// shorter than the even columns' (phase 1), and still takes every column it reaches.
    #[test]
    fn split_pairs_fills_a_shorter_odd_segment_as_far_as_it_reaches() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut row = [0f32; 8];
        split_pairs(&s, 1, 4, &mut row);
        // Phase 0 float i is input column 2i − 1 (column 7 lies past it); phase 1 float i is 2i.
        assert_eq!(row, [0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]);
    }

    #[test]
    fn direct_kernels_equal_the_definition_on_named_layouts() {
        let cases = [
            (Conv2d::new(3, 17, 3).padding(1), [2, 3, 9, 9]),
            (Conv2d::new(5, 33, 3).padding(1), [9, 5, 20, 21]),
            (Conv2d::new(16, 16, 3).padding(1), [3, 16, 8, 8]),
            (Conv2d::new(7, 9, 3).padding(1), [2, 7, 7, 5]),
            (Conv2d::new(4, 10, (3, 2)), [2, 4, 9, 4]),
            (Conv2d::new(16, 32, 3).padding(1).stride(2), [2, 16, 16, 16]),
            (Conv2d::new(32, 64, 3).padding(1).stride(2), [9, 32, 16, 16]),
            (Conv2d::new(16, 32, 1).stride(2).bias(false), [2, 16, 32, 32]),
            (Conv2d::new(3, 5, 3).padding(2).dilation(2), [2, 3, 11, 12]),
            (Conv2d::new(3, 6, (5, 3)).padding((4, 1)).stride((2, 3)).dilation((1, 2)), [3, 3, 13, 25]),
            (Conv2d::new(3, 6, (5, 4)).padding((2, 0)).stride((2, 3)), [3, 3, 13, 25]),
            (Conv2d::new(4, 5, 3).padding(2).stride(2), [2, 4, 7, 9]),
            (Conv2d::new(2, 3, 2).stride(3), [2, 2, 7, 8]),
            (Conv2d::new(3, 6, 3).padding(1).stride((2, 1)), [2, 3, 6, 10]),
        ];
        for (i, (cfg, input)) in cases.into_iter().enumerate() {
            check(cfg, input, i as u64).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// The same on random geometries: batches over a chunk, channel counts off the tile
        /// sizes, rows that end mid-vector; half of them unit stride and dilation, the rest
        /// strided, dilated or both, with any padding.
        #[test]
        fn direct_kernels_equal_the_definition(
            n in 1usize..19, ic in 1usize..11, oc in 1usize..20, h in 1usize..21, w in 1usize..21,
            kh in 1usize..6, kw in 1usize..6, ph in 0usize..4, pw in 0usize..4,
            sd in prop_oneof![Just([1usize; 4]), [1usize..4, 1usize..4, 1usize..3, 1usize..3]], seed in 0u64..1000,
        ) {
            let cfg = Conv2d::new(ic, oc, (kh, kw)).padding((ph, pw)).stride((sd[0], sd[1])).dilation((sd[2], sd[3]));
            check(cfg, [n, ic, h, w], seed)?;
        }
    }
}
